"""The dead-letter queue tool: list, show, replay and purge on real RabbitMQ, and its failure records."""

from __future__ import annotations

import json
import logging
import uuid

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from conveyor import Registry, open_store, queue, step
from conveyor.errors import DeadMessageNotFoundError, UnknownStepError, UnsupportedBrokerError
from conveyor.ops.dlq import DeadLetterQueue
from conveyor.settings import StepSettings
from conveyor.worker.failures import GROUP as RECORDS
from conveyor.worker.failures import FailureRecords
from conveyor.worker.middleware import DeadLetters, Retries
from devtools.processes import wait_for
from tests.flows.replay_probes import DONE, FIXED
from tests.helpers import memory_runtime, step_queue
from tests.operator_helpers import empty_queues, forget_records, queue_depth, run_cli, runtime_for, stop
from tests.system import System

STEP = "FailsUntilFixed"
TOPIC = "test.fails-until-fixed"


@pytest.fixture(scope="module")
def system(rabbitmq, tmp_path_factory):
    running = System(
        tmp_path_factory.mktemp("dead-letters"),
        rabbitmq.url,
        extra_config="""
[steps.FailsUntilFixed]
max_retries = 1
retry_delay = 100
max_retry_delay = 100
[steps.AlwaysFails]
max_retries = 0
dead_letter_queue = "test.dead"
""",
    )
    running.start_workers(processes=1, threads=4)
    yield running
    stop(running)
    empty_queues(rabbitmq.url, STEP, "AlwaysFails")


@pytest.fixture(scope="module")
def runtime(system):
    with runtime_for(system) as built:
        yield built


@pytest.fixture
def dlq(runtime, system, rabbitmq):
    empty_queues(rabbitmq.url, STEP, "AlwaysFails")
    forget_records(system)
    return DeadLetterQueue(runtime)


def kill(runtime, rabbitmq, count: int, step: str = STEP, topic: str = TOPIC) -> dict[str, str]:
    """Send ``count`` probes that fail for good; returns message id -> probe id once all are dead."""
    probes: dict[str, str] = {}
    for _ in range(count):
        probe = uuid.uuid4().hex
        probes[runtime.publisher.send(step, {"id": probe}, topic=topic)] = probe
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue(step)}.XQ") == count, timeout=15)
    return probes


def test_dead_messages_are_listed_with_their_error_and_stay_in_the_queue(runtime, dlq, rabbitmq):
    probes = kill(runtime, rabbitmq, 2)

    listing = dlq.listing(STEP)

    assert listing.count == 2
    assert {m.message_id for m in listing.messages} == set(probes)
    for message in listing.messages:
        probe = probes[message.message_id]
        assert message.error == f"RuntimeError: not fixed yet: {probe}"
        assert message.traceback == f"RuntimeError: not fixed yet: {probe}"
        assert message.attempts == 2  # max_retries = 1
        assert message.failed_at.endswith("Z")
        assert message.topic == TOPIC
        assert message.data == {"id": probe}
    assert dlq.counts()[STEP] == 2
    assert queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 2  # reading took nothing out
    assert dlq.listing(STEP, limit=1).messages == listing.messages[:1]
    assert [s.step for s in dlq.overview()] == [STEP]


def test_show_gives_one_message_in_full(runtime, dlq, rabbitmq):
    [(message_id, probe)] = kill(runtime, rabbitmq, 1).items()

    message = dlq.get(STEP, message_id)

    assert message.data == {"id": probe}
    assert message.options["retries"] == 1
    shown = message.to_json()
    assert shown["error"] == f"RuntimeError: not fixed yet: {probe}"
    assert set(shown) >= {"traceId", "enqueuedAt", "traceback", "data", "options"}
    with pytest.raises(DeadMessageNotFoundError, match="no message 'missing'"):
        dlq.get(STEP, "missing")
    assert queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 1


def test_replay_sends_one_message_back_at_attempt_1_in_its_own_trace(runtime, dlq, system, rabbitmq, caplog):
    probes = kill(runtime, rabbitmq, 2)
    message_id, probe = next(iter(probes.items()))
    dead = dlq.get(STEP, message_id)
    system.state.set(FIXED, probe, True)

    with caplog.at_level(logging.INFO, logger="conveyor.dlq"):
        replay = dlq.replay(STEP, message_id)

    done = wait_for(lambda: system.state.get(DONE, probe), timeout=15)
    assert done["attempt"] == 1
    assert done["messageId"] == replay.new_message_id != message_id
    assert done["traceId"] == replay.trace_id == dead.trace_id  # the replay shows in the trace that failed
    assert done["replayedFromMessage"] == message_id
    assert done["topic"] == TOPIC
    assert f"Replayed dead message {message_id} of step {STEP}" in caplog.text
    assert f"in its trace {dead.trace_id}" in caplog.text
    # Only the replayed message left the queue; its failure record went with it.
    assert [m.message_id for m in dlq.listing(STEP).messages] == [m for m in probes if m != message_id]
    assert system.state.get(RECORDS, message_id) is None
    with pytest.raises(DeadMessageNotFoundError):
        dlq.replay(STEP, message_id)


def test_replay_all_sends_every_dead_message_back(runtime, dlq, system, rabbitmq):
    probes = kill(runtime, rabbitmq, 3)
    for probe in probes.values():
        system.state.set(FIXED, probe, True)

    replays = dlq.replay_all(STEP)

    assert {r.message_id for r in replays} == set(probes)
    for probe in probes.values():
        assert wait_for(lambda probe=probe: system.state.get(DONE, probe), timeout=15)["attempt"] == 1
    assert dlq.listing(STEP).count == 0
    assert FailureRecords(system.state).for_step(STEP) == {}


def test_a_replay_that_fails_again_is_dead_again_with_a_fresh_record(runtime, dlq, rabbitmq):
    [message_id] = kill(runtime, rabbitmq, 1)
    [replay] = dlq.replay_all(STEP)  # still not fixed
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 1, timeout=15)
    [again] = dlq.listing(STEP).messages
    assert again.message_id == replay.new_message_id
    assert again.attempts == 2
    assert again.trace_id == replay.trace_id
    assert again.options["replayed_from_message"] == message_id
    assert again.error.startswith("RuntimeError: not fixed yet")


def test_purge_empties_the_queue_and_the_records(runtime, dlq, system, rabbitmq):
    kill(runtime, rabbitmq, 2)
    assert len(FailureRecords(system.state).for_step(STEP)) == 2

    purge = dlq.purge(STEP)

    assert (purge.messages, purge.records) == (2, 2)
    assert queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 0
    assert FailureRecords(system.state).for_step(STEP) == {}
    assert dlq.purge(STEP).messages == 0


def test_failure_is_recorded_when_the_step_has_a_dead_letter_topic_too(runtime, dlq, system, rabbitmq):
    [(message_id, probe)] = kill(runtime, rabbitmq, 1, step="AlwaysFails", topic="test.always-fails").items()

    [message] = dlq.listing("AlwaysFails").messages

    assert message.message_id == message_id
    assert message.error == f"RuntimeError: boom {probe}"
    assert message.attempts == 1
    published = wait_for(lambda: system.state.get("dead", probe))  # DeadLetterSink got its record as before
    assert published["deadLetter"]["messageId"] == message_id


def test_steps_without_a_queue_are_named(dlq):
    with pytest.raises(UnknownStepError, match="'TestEnqueue' is an HTTP step"):
        dlq.listing("TestEnqueue")
    with pytest.raises(UnknownStepError, match="'Nope' is not declared; steps with queues: .*FailsUntilFixed"):
        dlq.purge("Nope")


def test_command_line_lists_shows_replays_and_purges(runtime, dlq, system, rabbitmq):
    probes = kill(runtime, rabbitmq, 2)
    first, second = probes

    listed = run_cli(system, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["STEP", "MESSAGE", "ID", "FAILED", "AT", "ATTEMPTS", "ERROR"]
    assert f"{STEP}  {first}" in listed.stdout and f"not fixed yet: {probes[first]}" in listed.stdout

    shown = run_cli(system, "dlq", "show", STEP, first, "--json")
    assert json.loads(shown.stdout)["data"] == {"id": probes[first]}

    system.state.set(FIXED, probes[first], True)
    replayed = run_cli(system, "dlq", "replay", STEP, first)
    assert replayed.stdout.startswith(f"Replayed {first} of {STEP} as "), replayed.stderr
    trace_id = json.loads(shown.stdout)["traceId"]
    assert replayed.stdout.strip().endswith(f"(in its trace {trace_id})")
    new_id = replayed.stdout.split()[5]
    assert f"as message {new_id}, in its trace {trace_id}" in replayed.stderr  # the log line
    wait_for(lambda: system.state.get(DONE, probes[first]), timeout=15)

    refused = run_cli(system, "dlq", "purge", STEP)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = run_cli(system, "dlq", "purge", STEP, "--yes")
    assert purged.stdout.strip() == f"Purged 1 dead message(s) and 1 failure record(s) of {STEP}."

    missing = run_cli(system, "dlq", "show", STEP, second)
    assert missing.returncode == 1
    assert f"no message '{second}' in the dead-letter queue of step '{STEP}'" in missing.stderr


def test_in_memory_broker_is_refused_clearly(tmp_path):
    registry = Registry()
    step(name="Work", triggers=[queue("work")], registry=registry)(lambda data, ctx: None)
    with pytest.raises(UnsupportedBrokerError, match="needs RabbitMQ, but this runtime uses the in-memory broker"):
        DeadLetterQueue(memory_runtime(tmp_path, registry))


def test_middleware_records_every_message_that_fails_for_good(tmp_path):
    records = FailureRecords(open_store(tmp_path / "state.db"))
    published = []
    no_retries = Retries(defaults=StepSettings(max_retries=0))
    broker = StubBroker(middleware=[DeadLetters(lambda *args: published.append(args), records), no_retries])

    @dramatiq.actor(broker=broker, actor_name="Breaks", queue_name="Breaks")
    def breaks(data: dict) -> None:
        raise ValueError(f"bad {data['id']}")

    message = breaks.send_with_options(args=({"id": "x"},), topic="t", trace_id="trace-1")
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        broker.join("Breaks", fail_fast=False)
        worker.join()
    finally:
        worker.stop()

    record = records.get(message.message_id)
    assert record is not None
    assert {k: record[k] for k in ("step", "topic", "traceId", "error", "traceback", "attempts")} == {
        "step": "Breaks",
        "topic": "t",
        "traceId": "trace-1",
        "error": "ValueError: bad x",
        "traceback": "ValueError: bad x",
        "attempts": 1,
    }
    assert published == []  # no dead_letter_queue topic: recorded, not published
