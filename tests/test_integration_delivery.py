"""Retries, dead letters, fan-out and crash recovery on real RabbitMQ and dramatiq worker processes."""

from __future__ import annotations

import os
import signal
import uuid

import pika

from devtools.processes import wait_for
from tests.helpers import step_queue


def enqueue(system, topic: str, data) -> list[str]:
    response = system.http.post(f"/_test/enqueue/{topic}", json={"data": data})
    assert response.status_code == 202, response.text
    return response.json()["messageIds"]


def queue_depth(rabbitmq, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_failing_step_is_retried_with_backoff_then_dead_lettered(system, rabbitmq):
    probe_id = uuid.uuid4().hex
    [message_id] = enqueue(system, "test.always-fails", {"id": probe_id})

    record = wait_for(lambda: system.state.get("dead", probe_id), timeout=30)
    attempts = system.state.get("attempts", probe_id)

    # max_retries = 3: the first run and exactly three retries.
    assert sorted(attempts) == ["1", "2", "3", "4"]
    assert record["deadLetter"]["attempts"] == 4
    assert record["deadLetter"]["messageId"] == message_id
    assert record["deadLetter"]["step"] == "AlwaysFails"
    assert record["deadLetter"]["topic"] == "test.always-fails"
    assert record["deadLetter"]["data"] == {"id": probe_id, "sleep": 0.0} or record["deadLetter"]["data"] == {
        "id": probe_id
    }
    assert record["id"] == probe_id  # the original fields, at the top level
    assert record["error"] == f"RuntimeError: boom {probe_id}"
    assert record["deadLetter"]["traceback"] == f"RuntimeError: boom {probe_id}"
    assert record["failedAt"].endswith("Z")

    # retry_delay 300 ms, exponential, capped at 1000 ms: gaps of 300, 600, 1000 ms.
    times = [attempts[str(n)] for n in range(1, 5)]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    for gap, expected in zip(gaps, [0.3, 0.6, 1.0], strict=True):
        assert expected * 0.95 <= gap <= expected + 1.0, gaps

    # Dramatiq's own dead-letter queue keeps the failed message as well.
    wait_for(lambda: queue_depth(rabbitmq, f"{step_queue('AlwaysFails')}.XQ") >= 1)


def test_input_failing_its_schema_is_dead_lettered_at_once(system):
    [message_id] = enqueue(system, "test.always-fails", {"not-an-id": 1})
    record = wait_for(lambda: system.state.get("dead", message_id), timeout=15)
    assert record["deadLetter"]["attempts"] == 1
    assert record["error"].startswith("InvalidInput: input for step 'AlwaysFails' failed its schema: id:")
    assert system.state.items("attempts") == [] or all(key != message_id for key, _ in system.state.items("attempts"))


def test_topic_with_two_subscribers_delivers_a_copy_to_each(system):
    probe_id = uuid.uuid4().hex
    ids = enqueue(system, "test.fanout", {"id": probe_id})
    assert len(set(ids)) == 2
    wait_for(lambda: system.state.get("fanout", f"A-{probe_id}") and system.state.get("fanout", f"B-{probe_id}"))
    assert system.state.get("fanout", f"B-{probe_id}") == {"topic": "test.fanout"}


def test_a_def_http_handler_enqueues_through_the_gateway_publisher(system):
    probe_id = uuid.uuid4().hex
    response = system.http.post("/_test/enqueue-sync/test.fanout", json={"data": {"id": probe_id}})
    assert response.status_code == 202
    assert len(set(response.json()["messageIds"])) == 2
    wait_for(lambda: system.state.get("fanout", f"A-{probe_id}") and system.state.get("fanout", f"B-{probe_id}"))


def test_message_survives_a_worker_killed_mid_handler(system):
    probe_id = uuid.uuid4().hex
    enqueue(system, "test.slow", {"id": probe_id, "sleep": 2.0})
    started = wait_for(lambda: system.state.get("slow-started", probe_id), timeout=15)
    [worker_pid] = [int(pid) for pid in started]

    os.kill(worker_pid, signal.SIGKILL)  # the worker process, in the middle of the handler
    # Dramatiq's master stops when a worker dies; a supervisor (or systemd) starts it again.
    master = system.processes.running["workers"]
    wait_for(lambda: master.poll() is not None, timeout=30)
    system.start_workers(processes=1, threads=4)

    done = wait_for(lambda: system.state.get("slow-done", probe_id), timeout=30)
    assert done["pid"] != worker_pid
    assert len(system.state.get("slow-started", probe_id)) == 2
