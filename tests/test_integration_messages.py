"""The messages flow end to end: a message through the real gateway, RabbitMQ and dramatiq workers.

The flow's behaviour (priorities, bad input, retries, dead letters, cleanup) is tested in process in
tests/test_flow_messages.py; this is the smoke test that the processes do the same, with the
simulated work really waited for and the completion notification sent by a state trigger.
"""

from __future__ import annotations

import time

import pytest

from devtools.processes import wait_for
from tests.flow_support import flow_system

pytestmark = pytest.mark.integration


def test_a_message_is_processed_recorded_and_its_completion_notified(rabbitmq, tmp_path_factory):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("messages")) as messages:
        body = {"text": "Process this message", "priority": "high", "metadata": {"source": "api", "userId": "user-123"}}
        started = time.monotonic()
        response = messages.http.post("/messages", json=body)
        assert response.status_code == 200
        message_id = response.json()["messageId"]
        assert response.json() == {"messageId": message_id, "status": "enqueued"}

        # gateway -> message.sent -> ProcessMessage (100 ms of work) -> message.processed -> RecordMessageResult
        result = wait_for(lambda: messages.state.get("message-results", message_id))
        print(f"\nPOST /messages to a recorded result: {(time.monotonic() - started) * 1000:.0f} ms")
        assert result["processedText"] == "PROCESS THIS MESSAGE"

        # the write that made it processed -> state trigger -> NotifyCompletion
        notification = wait_for(lambda: messages.state.get("message-notifications", message_id))
        message = messages.http.get(f"/messages/{message_id}").json()
        assert message["status"] == "processed"
        assert message["processedText"] == "PROCESS THIS MESSAGE"
        assert message["processingTime"] == 100
        assert message["metadata"] == {"source": "api", "userId": "user-123"}
        assert message["processedAt"] >= message["createdAt"]
        assert notification["type"] == "message_completed"
        assert notification["completedAt"] == message["processedAt"]
