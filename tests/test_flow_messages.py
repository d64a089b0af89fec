"""The messages flow (seed 002) on a real gateway, RabbitMQ, dramatiq workers and scheduler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.config import load_config
from tests.flow_support import FlowSystem, flow_system
from tests.system import ROOT, wait_for

# The seed's queue settings with a short retry delay; CleanupMessages every second.
EXTRA_CONFIG = """
[steps.ProcessMessage]
max_retries = 3
backoff = "fixed"
retry_delay = 1000
concurrency = 5
dead_letter_queue = "message.failed"
[steps.CleanupMessages]
cron = "* * * * * *"
"""


@pytest.fixture(scope="module")
def messages(rabbitmq, tmp_path_factory):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("messages"), EXTRA_CONFIG, scheduler=True) as system:
        yield system


def send(messages: FlowSystem, **body) -> str:
    response = messages.http.post("/messages", json=body)
    assert response.status_code == 200, response.text
    return response.json()["messageId"]


def message_with(messages: FlowSystem, message_id: str, status: str) -> dict | None:
    message = messages.state.get("messages", message_id)
    return message if message and message.get("status") == status else None


def test_message_is_enqueued_processed_and_notified(messages):
    body = {"text": "Process this message", "priority": "high", "metadata": {"source": "api", "userId": "user-123"}}
    response = messages.http.post("/messages", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"messageId", "status"} and answer["status"] == "enqueued"
    message_id = answer["messageId"]
    assert message_id.startswith("msg-")

    message = wait_for(lambda: message_with(messages, message_id, "processed"))
    assert message["messageId"] == message_id  # kept inside the value, where CleanupMessages reads it
    assert message["processedText"] == "PROCESS THIS MESSAGE"
    assert message["processingTime"] == 100  # high priority: 100 ms of simulated work
    assert message["metadata"] == {"source": "api", "userId": "user-123"}
    assert message["processedAt"] >= message["createdAt"]
    assert messages.http.get(f"/messages/{message_id}").json() == message

    result = wait_for(lambda: messages.state.get("message-results", message_id))
    assert result["processedText"] == "PROCESS THIS MESSAGE"
    notification = wait_for(lambda: messages.state.get("message-notifications", message_id))
    assert notification["type"] == "message_completed"
    assert notification["completedAt"] == message["processedAt"]


def test_priority_sets_the_simulated_work_and_defaults_to_normal(messages):
    normal, low = send(messages, text="normal one"), send(messages, text="low one", priority="low")
    assert wait_for(lambda: message_with(messages, normal, "processed"))["processingTime"] == 500
    assert wait_for(lambda: message_with(messages, low, "processed"))["processingTime"] == 1000
    assert messages.state.get("messages", normal)["priority"] == "normal"


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
def test_invalid_message_is_refused_with_400(messages, body, fields):
    response = messages.http.post("/messages", json=body)
    assert response.status_code == 400
    assert {f["field"] for f in response.json()["fields"]} == fields


def test_500_characters_is_the_longest_text_accepted(messages):
    message_id = send(messages, text="y" * 500, priority="high")
    assert wait_for(lambda: message_with(messages, message_id, "processed"))["processedText"] == "Y" * 500


def test_a_failed_attempt_marks_the_message_failed_and_the_retry_processes_it(messages):
    with messages.refusing("RecordMessageResult"):  # RabbitMQ refuses message.processed
        message_id = send(messages, text="try again", priority="high")
        failed = wait_for(lambda: message_with(messages, message_id, "failed"), timeout=15)
    assert failed["error"].startswith("PublishError: RabbitMQ did not take the message for step 'RecordMessageResult'")
    assert failed["failedAt"].endswith("Z")
    assert messages.state.get("message-notifications", message_id) is None  # not processed: nobody notified

    message = wait_for(lambda: message_with(messages, message_id, "processed"), timeout=15)
    assert message["processedText"] == "TRY AGAIN"
    wait_for(lambda: messages.state.get("message-results", message_id))
    wait_for(lambda: messages.state.get("message-notifications", message_id))
    assert messages.state.get("failed-messages", message_id) is None
    assert "Retrying message" in messages.log("workers")


def test_a_message_failing_every_attempt_is_dead_lettered_to_message_failed(messages):
    with messages.refusing("RecordMessageResult"):
        message_id = send(messages, text="never works", priority="high")
        dead = wait_for(lambda: messages.state.get("failed-messages", message_id), timeout=20)
    assert dead["attempts"] == 4  # the first run and max_retries = 3
    assert dead["text"] == "never works" and dead["priority"] == "high"
    assert dead["error"].startswith("PublishError: ")
    assert message_with(messages, message_id, "failed") is not None
    assert messages.log("workers").count(f"Processing message messageId={message_id}") == 4


def test_cleanup_deletes_processed_messages_older_than_30_days(messages):
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    old, old_pending, recent = f"old-{run}", f"old-pending-{run}", f"recent-{run}"
    long_ago = _iso(now - timedelta(days=31))
    messages.state.set(
        "messages", old, {"messageId": old, "status": "processed", "createdAt": long_ago, "processedAt": long_ago}
    )
    messages.state.set("messages", old_pending, {"messageId": old_pending, "status": "pending", "createdAt": long_ago})
    messages.state.set(
        "messages",
        recent,
        {"messageId": recent, "status": "processed", "createdAt": long_ago, "processedAt": _iso(now)},
    )

    wait_for(lambda: messages.state.get("messages", old) is None, timeout=30)
    assert messages.state.get("messages", old_pending) is not None  # only processed messages are cleaned up
    assert messages.state.get("messages", recent) is not None  # processedAt wins over createdAt
    assert "Fired cron step CleanupMessages" in messages.log("scheduler")
    # The deletion is a state change too; NotifyCompletion's condition ignores it.
    assert messages.state.get("message-notifications", old) is None


def test_shipped_config_has_the_seeds_queue_settings():
    process = load_config(Path(ROOT) / "config.toml").steps["ProcessMessage"]
    assert (process.max_retries, process.retry_delay, process.concurrency) == (3, 5000, 5)
    assert process.dead_letter_queue == "message.failed"


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
