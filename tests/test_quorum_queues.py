"""[broker] queue_type = "quorum": queue arguments, the delivery limit, priorities, type mismatches, delay queues."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from dramatiq.common import dq_name, xq_name
from pydantic import BaseModel

from conveyor import Registry, queue, step
from conveyor.config import Config, load_config, parse_config
from conveyor.declare.flows import load_flows
from conveyor.errors import ConfigError
from conveyor.messaging.broker import ConveyorRabbitmqBroker
from conveyor.messaging.delays import DelayQueueJanitor, delay_queue
from conveyor.runtime import Runtime
from devtools.localnode import LocalNode
from devtools.processes import ROOT, wait_for
from tests.flow_support import Management, own_vhost

DELIVERY_LIMIT = 2


@pytest.fixture(scope="module")
def url(rabbitmq: LocalNode) -> Iterator[str]:
    """A virtual host of this module's own: its quorum queues meet no classic queue of another test."""
    with own_vhost(rabbitmq, "quorum") as url:
        yield url


@pytest.fixture(scope="module")
def vhost(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def channel(url: str) -> Iterator[Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    yield connection.channel()
    connection.close()


def quorum_config(url: str, tmp_path: Path, deployment: str, **broker: Any) -> Config:
    return parse_config(
        {
            "project": {"name": deployment},
            "broker": {"url": url, "queue_type": "quorum", "delivery_limit": DELIVERY_LIMIT, **broker},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )


def queue_arguments(rabbitmq: LocalNode, vhost: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = Management(rabbitmq, vhost).api.queue(name) or {}
    return dict(found.get("arguments") or {})


def deployment() -> str:
    return f"q{uuid.uuid4().hex[:6]}"


# -- declaring -------------------------------------------------------------------------------------


def test_step_delay_and_dead_letter_queues_are_quorum_queues(
    rabbitmq: LocalNode, vhost: str, url: str, tmp_path: Path
) -> None:
    runtime = Runtime(quorum_config(url, tmp_path, deployment()), load_flows(["tests.flows"]))
    try:
        runtime.declare_queues()
        name = runtime.actors["QuickProbe"].queue_name
        main, delayed, dead = (queue_arguments(rabbitmq, vhost, q) for q in (name, dq_name(name), xq_name(name)))
        assert main == delayed
        assert main["x-queue-type"] == "quorum"
        assert main["x-delivery-limit"] == DELIVERY_LIMIT
        assert main["x-dead-letter-strategy"] == "at-least-once"
        assert main["x-overflow"] == "reject-publish"
        assert main["x-dead-letter-routing-key"] == xq_name(name)
        assert "x-max-priority" not in main
        assert dead["x-queue-type"] == "quorum"
        assert dead["x-message-ttl"] > 0

        broker = runtime.broker
        assert isinstance(broker, ConveyorRabbitmqBroker)
        message = runtime.actors["QuickProbe"].message({"id": "later"})
        broker.enqueue(message, delay=150)
        delay_name = broker.delay_queue(name, 150)[0]
        arguments = queue_arguments(rabbitmq, vhost, delay_name)
        assert arguments["x-queue-type"] == "quorum"
        assert "x-expires" not in arguments  # a quorum queue would expire with messages in it
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        consumer = broker.consume(name, timeout=5000)
        due = next(m for m in consumer if m is not None)  # expired out of the delay queue into the step's
        consumer.ack(due)
        consumer.close()
        assert due.message_id == message.message_id
    finally:
        runtime.close()


def test_a_classic_queue_where_quorum_is_configured_stops_start_up_with_migration_steps(
    url: str, channel: Any, tmp_path: Path
) -> None:
    name = deployment()
    channel.queue_declare(f"{name}.QuickProbe", durable=True)  # made before queue_type was set
    runtime = Runtime(quorum_config(url, tmp_path, name), load_flows(["tests.flows"]))
    try:
        with pytest.raises(ConfigError) as caught:
            runtime.declare_queues()
    finally:
        runtime.close()
    message = str(caught.value)
    print(message)
    assert f"'{name}.QuickProbe'" in message
    assert "x-queue-type=quorum, from [broker] queue_type" in message
    assert "rabbitmqctl delete_queue $q; done" in message and f"{name}.QuickProbe" in message
    assert "or set [broker] queue_type" in message


def test_a_step_with_a_priority_refuses_to_start_on_quorum_queues(url: str, tmp_path: Path) -> None:
    class In(BaseModel):
        id: str

    registry = Registry()
    for name, settings in (("Urgent", {"priority": "high"}), ("Plain", {})):
        step(name=name, triggers=[queue(name.lower(), input=In)], registry=registry, **settings)(lambda i, c: None)
    config = parse_config(
        {
            "broker": {"url": url, "queue_type": "quorum"},
            "state": {"path": str(tmp_path / "state.db")},
        }
    )
    runtime = Runtime(config, registry)
    try:
        with pytest.raises(ConfigError) as caught:
            runtime.check()
    finally:
        runtime.close()
    message = str(caught.value)
    assert "steps Urgent set a priority" in message and "Plain" not in message
    assert 'queue_type = "classic"' in message and "drop the priority" in message
    classic = Runtime(parse_config({**config.model_dump(), "broker": {"url": url}}), registry)
    try:
        classic.check()  # the same steps start on classic queues
    finally:
        classic.close()


# -- delay queues ----------------------------------------------------------------------------------


def test_delay_queue_names_sort_in_delay_order() -> None:
    delays = [10, 500, 990, 4000, 37_234, 2_400_000, 4_294_967_295]
    names = [delay_queue("shop.orders.ProcessOrder", ms)[0] for ms in delays]
    assert sorted(names) == names
    assert names[1] == "shop.orders.ProcessOrder.delay.0000000500ms"


def test_the_janitor_removes_empty_idle_delay_queues_and_keeps_the_others(
    rabbitmq: LocalNode, vhost: str, url: str, channel: Any, tmp_path: Path
) -> None:
    runtime = Runtime(quorum_config(url, tmp_path, deployment()), load_flows(["tests.flows"]))
    try:
        broker = runtime.broker
        assert isinstance(broker, ConveyorRabbitmqBroker)
        name = runtime.actors["QuickProbe"].queue_name
        broker.enqueue(runtime.actors["QuickProbe"].message({"id": "waits"}), delay=600_000)
        full = broker.delay_queue(name, 600_000)[0]
        empty, arguments = broker.delay_queue(name, 20_000)
        channel.queue_declare(empty, durable=True, arguments=arguments)
        api = Management(rabbitmq, vhost).api
        listed = wait_for(
            lambda: (q := api.queues()).get(full, {}).get("messages") == 1 and empty in q and q,
            30,
            what="both delay queues in the management API",
        )
        print({n: listed[n] for n in (full, empty)})
        clock = [0.0]
        janitor = DelayQueueJanitor(broker, idle_for=600, clock=lambda: clock[0])
        assert janitor.remove_idle([name], listed) == 0  # first seen quiet now
        clock[0] = 300
        assert janitor.remove_idle([name], listed) == 0  # quiet, not for long enough
        assert channel.queue_declare(empty, passive=True).method.message_count == 0
        clock[0] = 601
        assert janitor.remove_idle([name], listed) == 1  # the empty one; the one holding a message stays
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            channel.queue_declare(empty, passive=True)
        assert channel.connection.channel().queue_declare(full, passive=True).method.message_count == 1
    finally:
        runtime.close()


# -- a message that crashes its worker -------------------------------------------------------------

CRASH_STEP = """
import os

from pydantic import BaseModel

from conveyor import Context, queue, step


class Crash(BaseModel):
    id: str


@step(name="CrashProbe", triggers=[queue("crash.probe", input=Crash)])
def handler(event: Crash, ctx: Context) -> None:
    with open(os.environ["CRASH_LOG"], "a") as log:
        log.write(event.id + "\\n")
    os._exit(3)  # the worker process dies mid-handler, as on a segfault or the OOM killer
"""


def test_a_message_that_kills_its_worker_is_dead_lettered_after_the_delivery_limit(
    url: str, channel: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "crashflow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "crash.py").write_text(textwrap.dedent(CRASH_STEP))
    monkeypatch.syspath_prepend(str(tmp_path))
    name = deployment()
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[project]\nname = "{name}"\nflows = ["crashflow"]\n'
        f'[broker]\nurl = "{url}"\nqueue_type = "quorum"\ndelivery_limit = {DELIVERY_LIMIT}\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
    )
    runtime = Runtime(load_config(config_path), load_flows(["crashflow"]))
    try:
        runtime.declare_queues()
        runtime.publisher.publish("crash.probe", {"id": "poison"})
        queue_name = runtime.actors["CrashProbe"].queue_name
    finally:
        runtime.close()

    crash_log = tmp_path / "deliveries.log"
    env = {
        **os.environ,
        "CONVEYOR_CONFIG": str(config_path),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "CRASH_LOG": str(crash_log),
    }
    dead = 0
    runs = 0
    # dramatiq's master stops when its worker dies: restart it, as the supervisor would, a bounded number of times.
    while runs < DELIVERY_LIMIT + 3 and not dead:
        runs += 1
        worker = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", "actors", "-p", "1", "-t", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"worker-{runs}.log").open("wb"),
            start_new_session=True,
        )
        try:
            wait_for(
                lambda w=worker: w.poll() is not None or _depth(channel, xq_name(queue_name)),  # type: ignore[misc]
                90,
                what="the worker to take the message and die, or the message in .XQ",
            )
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, 9)
            worker.wait(10)
        dead = _depth(channel, xq_name(queue_name))
    deliveries = crash_log.read_text().split() if crash_log.exists() else []
    print(f"worker runs: {runs}, deliveries: {len(deliveries)}, dead-lettered: {dead}")
    assert dead == 1
    assert 1 <= len(deliveries) <= DELIVERY_LIMIT + 1
    assert _depth(channel, queue_name) == 0
    method, properties, _ = channel.basic_get(xq_name(queue_name))
    assert method is not None
    assert properties.headers["x-death"][0]["reason"] == "delivery_limit"
    channel.basic_nack(method.delivery_tag, requeue=True)


def _depth(channel: Any, name: str) -> int:
    return int(channel.queue_declare(name, passive=True).method.message_count)
