"""Queue stats from RabbitMQ's management API, per step, and the table ``python -m actors stats`` prints."""

from __future__ import annotations

import json
import uuid

import pytest

from conveyor import Registry, queue, step
from conveyor.errors import BrokerUnavailableError, UnsupportedBrokerError
from conveyor.ops.management import ManagementAPI, broker_credentials
from conveyor.ops.queue_stats import QueueStats, queue_stats
from devtools.processes import wait_for
from tests.flows.replay_probes import DONE, FIXED
from tests.helpers import memory_runtime, step_queue
from tests.operator_helpers import empty_queues, queue_depth, run_cli, runtime_for, stop, with_management_url
from tests.system import System

STEP = "FailsUntilFixed"
TOPIC = "test.fails-until-fixed"

#: RabbitMQ's management API refreshes queue figures every 5 s.
STATS_LAG = 15


@pytest.fixture(scope="module")
def system(rabbitmq, tmp_path_factory):
    running = System(
        tmp_path_factory.mktemp("queue-stats"),
        rabbitmq.url,
        extra_config="""
[steps.FailsUntilFixed]
max_retries = 1
retry_delay = 60000
[steps.AlwaysFails]
max_retries = 0
""",
    )
    with_management_url(running, rabbitmq.management_url)
    empty_queues(rabbitmq.url, STEP, "AlwaysFails")
    yield running  # no workers until a test starts them
    stop(running)
    empty_queues(rabbitmq.url, STEP, "AlwaysFails", delays_ms=(60000,))  # the message waiting its 60 s retry


@pytest.fixture(scope="module")
def runtime(system):
    with runtime_for(system) as built:
        yield built


def stats_of(runtime, name: str) -> QueueStats:
    return next(s for s in queue_stats(runtime) if s.step == name)


def test_ready_counts_messages_no_worker_takes(runtime, system):
    probes = [uuid.uuid4().hex for _ in range(3)]
    for probe in probes:
        system.state.set(FIXED, probe, True)
        runtime.publisher.send(STEP, {"id": probe}, topic=TOPIC)

    # RabbitMQ samples its figures every few seconds: a worker of an earlier test that just left
    # can still show as a consumer in the first sample, so wait for a sample without it too.
    stats = wait_for(
        lambda: (s := stats_of(runtime, STEP)).ready == 3 and s.consumers == 0 and s, timeout=STATS_LAG * 2
    )

    assert (stats.unacknowledged, stats.consumers, stats.declared) == (0, 0, True)
    assert {s.step for s in queue_stats(runtime)} == set(runtime.actors)


def test_workers_drain_the_queue_and_delayed_and_dead_messages_are_counted(runtime, system, rabbitmq):
    system.start_workers(processes=1, threads=2)
    runtime.publisher.send(STEP, {"id": uuid.uuid4().hex}, topic=TOPIC)  # not fixed: waits 60 s for its retry
    for _ in range(2):
        runtime.publisher.send("AlwaysFails", {"id": uuid.uuid4().hex}, topic="test.always-fails")
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue('AlwaysFails')}.XQ") == 2)

    # One wait: RabbitMQ samples every queue at once.
    def settled():
        mine, failing = stats_of(runtime, STEP), stats_of(runtime, "AlwaysFails")
        ready = (mine.consumers >= 1, mine.ready, mine.unacknowledged, mine.delayed, failing.dead_lettered)
        return ready == (True, 0, 0, 1, 2)

    wait_for(settled, timeout=STATS_LAG)
    wait_for(lambda: len(system.state.items(DONE)) == 3)  # the backlog of the test before ran


def test_command_line_prints_a_table_or_json(system, runtime):
    table = run_cli(system, "stats")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["STEP", "READY", "UNACKED", "DELAYED", "DEAD", "CONSUMERS"]
    assert any(row.split()[0] == STEP for row in rows)

    as_json = json.loads(run_cli(system, "stats", "--json").stdout)
    mine = next(s for s in as_json["steps"] if s["step"] == STEP)
    assert set(mine) == {"step", "queue", "ready", "unacknowledged", "delayed", "deadLettered", "consumers", "declared"}


def test_unreachable_management_api_says_what_to_check():
    api = ManagementAPI("http://127.0.0.1:9", "amqp://ops:hunter2@127.0.0.1:5672/%2F", timeout=2)
    with pytest.raises(BrokerUnavailableError, match="rabbitmq_management.*management_url") as caught:
        api.queues()
    assert "hunter2" not in str(caught.value)


def test_in_memory_broker_has_no_stats(tmp_path):
    registry = Registry()
    step(name="Work", triggers=[queue("work")], registry=registry)(lambda data, ctx: None)
    with pytest.raises(UnsupportedBrokerError, match="Queue stats needs RabbitMQ"):
        queue_stats(memory_runtime(tmp_path, registry))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F", ("guest", "guest", "/")),
        ("amqp://app:s%40cret@mq.internal/orders", ("app", "s@cret", "orders")),
        ("amqp://mq.internal", ("guest", "guest", "/")),
    ],
)
def test_credentials_and_virtual_host_come_from_the_broker_url(url, expected):
    assert broker_credentials(url) == expected
