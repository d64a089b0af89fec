"""The job-queues flow end to end: a webhook queued at the real gateway, carried by RabbitMQ and
delivered over real HTTP by a dramatiq worker process.

The flow's behaviour (retries and their backoff, dead letters, timeouts, the email and image
queues, the event bus, priorities) is tested in process in tests/test_flow_jobs.py, against
the same receiver; this is the smoke test that the processes do the same. That RabbitMQ
itself delivers high priorities first is tests/test_integration_capabilities.py's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from devtools.processes import wait_for
from tests.flow_support import flow_system
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_webhook_is_delivered_over_http_by_a_worker_process(rabbitmq, tmp_path, receiver):
    with flow_system(rabbitmq, tmp_path) as system:
        path = f"/ok/{uuid.uuid4().hex}"
        payload = {"event": "invoice.paid", "amount": 42}
        body = {"url": receiver.url + path, "payload": payload, "headers": {"X-Signature": "sig-123"}}
        started = time.monotonic()
        response = system.http.post("/webhooks", json=body)
        assert response.status_code == 202, response.text
        delivery_id = response.json()["deliveryId"]

        delivered = wait_for(
            lambda: (d := system.http.get(f"/webhooks/{delivery_id}").json()).get("status") == "delivered" and d
        )
        print(f"\nPOST /webhooks to delivered: {(time.monotonic() - started) * 1000:.0f} ms")
        assert (delivered["statusCode"], delivered["attempts"]) == (200, 1)

    [request] = receiver.hits(path)
    assert json.loads(request["body"]) == payload
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-signature"] == "sig-123"
    assert (headers["x-webhook-id"], headers["x-webhook-attempt"]) == (delivery_id, "1")
