"""The messages flow (seed 002), in process: the whole flow, and one step at a time.

tests/test_integration_messages.py runs a message through the real gateway, RabbitMQ and
dramatiq workers, simulated work and state trigger included.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conveyor import PublishError
from conveyor.clock import iso
from conveyor.config import load_config
from conveyor.declare.cron_expressions import parse_cron
from conveyor.testing import FlowEnvironment, StepEnvironment
from flows.messages import get_message, notify_completion, process_message, send_message

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


@pytest.fixture(autouse=True)
def simulated_work(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """ProcessMessage's simulated work (100 ms to 1 s of asyncio.sleep) without the wait; the seconds it asked for.

    FlowEnvironment's clock skips delays and backoff, not a handler's own sleep.
    """
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(process_message, "asyncio", SimpleNamespace(sleep=sleep))
    return slept


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    """The messages flow with the project's config.toml (ProcessMessage: 3 retries 5 s apart, then message.failed)."""
    with FlowEnvironment("flows.messages", config=CONFIG) as environment:
        yield environment


def send(flow: FlowEnvironment, **body: Any) -> str:
    response = flow.http.post("/messages", json=body)
    assert response.status_code == 200, response.text
    return response.json()["messageId"]


def attempts_logged(flow: FlowEnvironment, message_id: str) -> list[int]:
    return [
        line.fields["attempt"]
        for line in flow.logs
        if line.message == "Processing message" and line.fields["messageId"] == message_id
    ]


def _iso(when: datetime) -> str:
    return iso(when)


# -- the whole flow ------------------------------------------------------------------------


def test_message_is_enqueued_processed_and_notified(flow, simulated_work):
    body = {"text": "Process this message", "priority": "high", "metadata": {"source": "api", "userId": "user-123"}}
    response = flow.http.post("/messages", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"messageId", "status"} and answer["status"] == "enqueued"
    message_id = answer["messageId"]
    assert message_id.startswith("msg-")
    flow.join()

    message = flow.state.get("messages", message_id)
    assert message["status"] == "processed"
    assert message["messageId"] == message_id  # kept inside the value, where CleanupMessages reads it
    assert message["text"] == "Process this message" and message["priority"] == "high"
    assert message["processedText"] == "PROCESS THIS MESSAGE"
    assert message["processingTime"] == 100 and simulated_work == [0.1]  # high priority: 100 ms of work
    assert message["metadata"] == {"source": "api", "userId": "user-123"}
    assert message["processedAt"] >= message["createdAt"]
    assert flow.http.get(f"/messages/{message_id}").json() == message

    result = flow.state.get("message-results", message_id)
    assert result["processedText"] == "PROCESS THIS MESSAGE"
    notification = flow.state.get("message-notifications", message_id)
    assert notification["type"] == "message_completed"
    assert notification["completedAt"] == message["processedAt"]


def test_priority_sets_the_simulated_work_and_defaults_to_normal(flow, simulated_work):
    normal, low = send(flow, text="normal one"), send(flow, text="low one", priority="low")
    flow.join()

    assert flow.state.get("messages", normal)["priority"] == "normal"
    assert flow.state.get("messages", normal)["processingTime"] == 500
    assert flow.state.get("messages", low)["processingTime"] == 1000
    assert sorted(simulated_work) == [0.5, 1.0]


def test_a_failed_attempt_is_retried_and_the_retry_processes_the_message(flow):
    with flow.refusing("RecordMessageResult", times=1):  # the first message.processed
        message_id = send(flow, text="try again", priority="high")
        flow.join()
    assert len(flow.refused) == 1

    message = flow.state.get("messages", message_id)
    assert message["status"] == "processed" and message["processedText"] == "TRY AGAIN"
    assert "error" not in message and "failedAt" not in message  # the failed attempt's marks are gone
    assert attempts_logged(flow, message_id) == [1, 2]
    assert [m.delay_ms for m in flow.sent_to("ProcessMessage")] == [None, 5000]  # the shipped fixed 5 s
    assert flow.state.get("message-results", message_id)["processedText"] == "TRY AGAIN"
    assert flow.state.get("message-notifications", message_id)["completedAt"] == message["processedAt"]
    assert flow.state.get("failed-messages", message_id) is None
    assert flow.dead_letters == []


def test_a_message_failing_every_attempt_is_dead_lettered_to_message_failed(flow):
    with flow.refusing("RecordMessageResult"):
        message_id = send(flow, text="never works", priority="high")
        flow.join()  # no exception: ProcessMessage's failures go to message.failed
    assert len(flow.refused) == 4

    dead = flow.state.get("failed-messages", message_id)
    assert dead["attempts"] == 4  # the first run and max_retries = 3
    assert dead["text"] == "never works" and dead["priority"] == "high"
    assert dead["error"].startswith("PublishError: RabbitMQ did not take the message for step 'RecordMessageResult'")
    assert attempts_logged(flow, message_id) == [1, 2, 3, 4]
    assert [m.topic for m in flow.sent_to("HandleFailedMessage")] == ["message.failed"]

    message = flow.state.get("messages", message_id)
    assert message["status"] == "failed" and message["error"] == dead["error"]
    assert message["failedAt"].endswith("Z")
    assert flow.state.get("message-results", message_id) is None
    assert flow.state.get("message-notifications", message_id) is None  # never processed: nobody notified


def test_a_message_rabbitmq_refuses_is_a_503_and_leaves_nothing_behind(flow):
    with flow.refusing("ProcessMessage"):
        response = flow.http.post("/messages", json={"text": "lost in transit"})
    assert response.status_code == 503  # the client sends it again
    flow.join()
    assert flow.state.list("messages") == []


def test_cleanup_deletes_processed_messages_older_than_30_days(flow):
    now = datetime.now(UTC)
    long_ago = _iso(now - timedelta(days=31))
    flow.state.set(
        "messages", "old", {"messageId": "old", "status": "processed", "createdAt": long_ago, "processedAt": long_ago}
    )
    flow.state.set("messages", "old-pending", {"messageId": "old-pending", "status": "pending", "createdAt": long_ago})
    flow.state.set(
        "messages",
        "recent",
        {"messageId": "recent", "status": "processed", "createdAt": long_ago, "processedAt": _iso(now)},
    )
    flow.join()  # the writes made "old" and "recent" processed: NotifyCompletion notified them
    notified = dict(flow.state.items("message-notifications"))
    assert sorted(notified) == ["old", "recent"]

    flow.fire("CleanupMessages")  # as the scheduler does at 02:00
    flow.join()

    assert flow.state.get("messages", "old") is None
    assert flow.state.get("messages", "old-pending") is not None  # only processed messages are cleaned up
    assert flow.state.get("messages", "recent") is not None  # processedAt wins over createdAt
    # The deletion is a state change too: NotifyCompletion got it, and its condition skipped it.
    assert [m.data["event"] for m in flow.sent_to("NotifyCompletion")][-1] == "deleted"
    assert flow.state.get("conveyor.skipped", "NotifyCompletion") == {"count": 1}
    assert dict(flow.state.items("message-notifications")) == notified


def test_cleanup_is_scheduled_daily_at_2_am():
    with FlowEnvironment("flows.messages", config=CONFIG) as flow:
        schedules = {step.name: expression for step, expression in flow.runtime.cron_steps()}
        timezone = flow.runtime.config.scheduler.timezone
    assert schedules == {"CleanupMessages": "0 0 2 * * * *"}
    after = datetime(2025, 3, 1, 2, 0, 1, tzinfo=UTC)
    next_run = parse_cron(schedules["CleanupMessages"], timezone=timezone).get_next_fire_time(None, after)
    assert next_run == datetime(2025, 3, 2, 2, 0, tzinfo=UTC)


def test_shipped_config_has_the_seeds_queue_settings():
    process = load_config(CONFIG).steps["ProcessMessage"]
    assert (process.max_retries, process.retry_delay, process.concurrency) == (3, 5000, 5)
    assert process.dead_letter_queue == "message.failed"


# -- one step at a time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"text": ""}, {"text"}),
        ({"text": "x" * 501}, {"text"}),
        ({}, {"text"}),
        ({"text": "hi", "priority": "urgent"}, {"priority"}),
        ({"text": "hi", "metadata": {"count": 3}}, {"metadata.count"}),
    ],
)
def test_invalid_message_is_refused_with_400_and_nothing_is_stored_or_enqueued(body, fields):
    with StepEnvironment() as env:
        answer = env.request(send_message.handler, json=body)
        assert answer.status == 400
        assert {f["field"] for f in answer.body["fields"]} == fields
        assert answer.enqueued == [] and env.state.list("messages") == []


def test_500_characters_is_the_longest_text_accepted():
    with StepEnvironment() as env:
        answer = env.request(send_message.handler, json={"text": "y" * 500, "priority": "high"})
        assert answer.status == 200
        [sent] = answer.enqueued
        env.run(process_message.handler, sent.data)
        assert env.state.get("messages", answer.body["messageId"])["processedText"] == "Y" * 500


@pytest.mark.parametrize("priority", ["low", "normal", "high"])
def test_a_message_is_stored_pending_and_enqueued_at_its_own_priority(priority):
    with StepEnvironment() as env:
        answer = env.request(send_message.handler, json={"text": "hello", "priority": priority})
        message_id = answer.body["messageId"]
        assert env.state.get("messages", message_id)["status"] == "pending"
        [sent] = answer.enqueued
        assert (sent.topic, sent.priority) == ("message.sent", priority)
        assert sent.data == {"messageId": message_id, "text": "hello", "priority": priority}


def test_a_failed_attempt_marks_the_message_failed_and_raises_for_the_retry():
    with StepEnvironment() as env:
        env.state.set("messages", "m-1", {"messageId": "m-1", "text": "try again", "status": "pending"})
        with env.refusing("message.processed"), pytest.raises(PublishError):
            env.run(process_message.handler, {"messageId": "m-1", "text": "try again", "priority": "high"})

        failed = env.state.get("messages", "m-1")
        assert failed["status"] == "failed"
        assert failed["error"].startswith("PublishError: RabbitMQ did not take the message (topic 'message.processed')")
        assert failed["failedAt"].endswith("Z")
        assert "processedText" not in failed


def test_get_message_answers_404_for_an_unknown_message():
    with StepEnvironment() as env:
        answer = env.request(get_message.handler, path_params={"messageId": "msg-unknown"})
        assert (answer.status, answer.body) == (404, {"error": "Message not found"})


def test_notify_completion_only_for_the_write_that_makes_a_message_processed():
    processed = {"messageId": "m", "status": "processed", "processedAt": "2025-03-01T12:00:00.000Z"}
    change = {"group": "messages", "key": "m", "event": "updated", "value": processed}
    with StepEnvironment() as env:
        assert not env.run(notify_completion.handler, {**change, "old_value": {"status": "pending"}}).skipped
        assert env.state.get("message-notifications", "m")["completedAt"] == "2025-03-01T12:00:00.000Z"
        assert env.run(notify_completion.handler, {**change, "old_value": processed}).skipped
        deleted = {**change, "event": "deleted", "old_value": processed, "value": None}
        assert env.run(notify_completion.handler, deleted).skipped
