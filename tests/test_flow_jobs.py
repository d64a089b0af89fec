"""The job-queues flow (seed 004), in process: the whole flow through the gateway's app, on the shipped config.

Webhooks are delivered for real, over HTTP, to a receiver this module runs on 127.0.0.1;
retry backoff is skipped on the test's clock, so only the timeout case waits (a fraction of a
second). tests/test_integration_jobs.py delivers one webhook through the real gateway,
RabbitMQ and a dramatiq worker process.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import load_config
from conveyor.testing import FlowEnvironment, StepEnvironment
from flows.jobs import get_webhook_delivery, record_failed_webhook
from tests.webhook_receiver import HANG_SECONDS, Receiver

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    """The job-queues flow with the project's config.toml (DeliverWebhook: 2 retries from 2 s, then webhook.failed)."""
    with FlowEnvironment("flows.jobs", config=CONFIG) as environment:
        yield environment


def deliver(flow: FlowEnvironment, url: str, payload: Any, **extra: Any) -> str:
    response = flow.http.post("/webhooks", json={"url": url, "payload": payload, **extra})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert response.headers["location"] == f"/webhooks/{response.json()['deliveryId']}"
    return response.json()["deliveryId"]


def delivery(flow: FlowEnvironment, delivery_id: str) -> dict:
    response = flow.http.get(f"/webhooks/{delivery_id}")
    assert response.status_code == 200
    return response.json()


def emails_to(flow: FlowEnvironment, address: str) -> list[dict]:
    return flow.http.get("/emails", params={"to": address}).json()


def email_body(to: str, **extra: Any) -> dict[str, Any]:
    return {"to": to, "subject": "News", "template": "digest", **extra}


# --- webhooks ---------------------------------------------------------------------------------


def test_webhook_is_delivered_over_http_with_its_payload_and_headers(flow, receiver):
    path = f"/ok/{uuid.uuid4().hex}"
    payload = {"event": "invoice.paid", "amount": 42}
    delivery_id = deliver(flow, receiver.url + path, payload, headers={"X-Signature": "sig-123"})
    flow.join()

    delivered = delivery(flow, delivery_id)
    assert (delivered["status"], delivered["statusCode"], delivered["attempts"]) == ("delivered", 200, 1)
    assert delivered["deliveredAt"].endswith("Z")
    [request] = receiver.hits(path)
    assert json.loads(request["body"]) == payload
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-signature"] == "sig-123"
    assert headers["x-webhook-id"] == delivery_id
    assert headers["x-webhook-attempt"] == "1"
    assert headers["user-agent"] == "conveyor-webhooks/1.0"


def test_webhook_answered_500_is_retried_with_exponential_backoff_then_dead_lettered(flow, receiver):
    path = f"/status/500/{uuid.uuid4().hex}"
    delivery_id = deliver(flow, receiver.url + path, {"n": 1})
    flow.join()  # no exception: the failure goes to webhook.failed, which RecordFailedWebhook handles

    failed = delivery(flow, delivery_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 3)  # the first attempt and max_retries = 2
    assert failed["error"] == f"WebhookDeliveryError: POST {receiver.url}{path} answered 500"
    assert failed["lastStatusCode"] == 500
    assert failed["failedAt"].endswith("Z")

    hits = receiver.hits(path)
    assert [h["headers"]["x-webhook-attempt"] for h in hits] == ["1", "2", "3"]
    assert {h["headers"]["x-webhook-id"] for h in hits} == {delivery_id}
    # Exponential backoff from retry_delay = 2000 ms (skipped on the test's clock, not waited for).
    assert [m.delay_ms for m in flow.sent_to("DeliverWebhook")] == [None, 2000, 4000]
    assert flow.skipped_time > 2 + 4 - 1
    [dead] = flow.dead_letters_of("DeliverWebhook")
    assert (dead.attempts, dead.error) == (3, failed["error"])
    [recorded] = flow.sent_to("RecordFailedWebhook")
    assert (recorded.topic, recorded.data["deliveryId"]) == ("webhook.failed", delivery_id)


def test_a_dead_delivery_replayed_once_the_receiver_is_back_is_delivered_without_its_failure(flow, receiver):
    path = f"/flaky/3/{uuid.uuid4().hex}"  # 500 to all three attempts, then 200
    delivery_id = deliver(flow, receiver.url + path, {"n": 1})
    flow.join()
    assert delivery(flow, delivery_id)["status"] == "failed"

    [dead] = flow.dead_letters_of("DeliverWebhook")
    flow.publish("webhook.deliver", dead.data)  # what a replay sends: the dead message's data
    flow.join()
    delivered = delivery(flow, delivery_id)
    assert (delivered["status"], delivered["statusCode"]) == ("delivered", 200)
    assert "error" not in delivered and "failedAt" not in delivered


def test_webhook_that_fails_twice_then_succeeds_is_delivered_on_the_third_attempt(flow, receiver):
    path = f"/flaky/2/{uuid.uuid4().hex}"
    delivery_id = deliver(flow, receiver.url + path, {"n": 2})
    flow.join()

    delivered = delivery(flow, delivery_id)
    assert (delivered["status"], delivered["attempts"], delivered["statusCode"]) == ("delivered", 3, 200)
    assert delivered["lastError"].endswith("answered 500")  # the last failed attempt stays visible
    assert len(receiver.hits(path)) == 3
    assert flow.dead_letters == [] and flow.sent_to("RecordFailedWebhook") == []


def test_webhook_receiver_that_does_not_answer_in_time_fails_the_attempt(flow, receiver):
    path = f"/hang/1/{uuid.uuid4().hex}"
    started = time.monotonic()
    delivery_id = deliver(flow, receiver.url + path, {"n": 3}, timeoutSeconds=0.2)
    flow.join()

    delivered = delivery(flow, delivery_id)
    assert (delivered["status"], delivered["attempts"]) == ("delivered", 2)
    assert "ReadTimeout" in delivered["lastError"]
    assert time.monotonic() - started < HANG_SECONDS  # the sender gave up; it did not wait for the answer


def test_webhook_to_a_closed_port_fails_to_connect_and_is_dead_lettered(flow):
    delivery_id = deliver(flow, "http://127.0.0.1:9/hook", {"n": 4}, timeoutSeconds=1)
    flow.join()

    failed = delivery(flow, delivery_id)
    assert failed["status"] == "failed"
    assert "ConnectError" in failed["error"]
    assert failed.get("lastStatusCode") is None  # no answer at all
    assert [d.step for d in flow.dead_letters] == ["DeliverWebhook"]


def test_a_callers_headers_cannot_stand_in_for_the_webhooks_own(flow, receiver):
    path = f"/ok/{uuid.uuid4().hex}"
    spoof = {"X-Webhook-Id": "spoofed", "X-Webhook-Attempt": "9", "User-Agent": "other", "X-Trace": "kept"}
    delivery_id = deliver(flow, receiver.url + path, {"n": 5}, headers=spoof)
    flow.join()

    [request] = receiver.hits(path)
    sent = request["headers"]
    assert [sent.get_all(name) for name in ("x-webhook-id", "x-webhook-attempt", "user-agent")] == [
        [delivery_id],
        ["1"],
        ["conveyor-webhooks/1.0"],
    ]
    assert sent["x-trace"] == "kept"


def test_a_failure_record_without_its_dead_letter_part_keeps_the_delivery_readable():
    with StepEnvironment() as env:
        env.state.set(
            "webhook-deliveries",
            "whd-1",
            {"deliveryId": "whd-1", "url": "http://x", "status": "retrying", "attempts": 2, "createdAt": "t"},
        )
        env.run(
            record_failed_webhook.handler, {"deliveryId": "whd-1", "url": "http://x", "error": "boom", "failedAt": "t"}
        )
        answer = env.request(get_webhook_delivery.handler, path_params={"deliveryId": "whd-1"})
        assert answer.status == 200
        assert (answer.body["status"], answer.body["attempts"], answer.body["error"]) == ("failed", 2, "boom")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "payload": {}}, "url"),
        ({"url": "not a url", "payload": {}}, "url"),
        ({"url": "http://127.0.0.1:9/x"}, "payload"),
        ({"url": "http://127.0.0.1:9/x", "payload": {}, "timeoutSeconds": 60}, "timeoutSeconds"),
    ],
)
def test_invalid_webhook_is_refused_with_400_and_nothing_stored_or_queued(flow, body, field):
    response = flow.http.post("/webhooks", json=body)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["fields"]] == [field]
    flow.join()
    assert flow.state.list("webhook-deliveries") == [] and flow.sent == []


def test_unknown_webhook_delivery_is_404(flow):
    response = flow.http.get("/webhooks/whd-unknown")
    assert response.status_code == 404
    assert response.json() == {"error": "Webhook delivery not found"}


# --- email and image queues -------------------------------------------------------------------


def test_email_queue_records_the_email_as_sent(flow):
    address = "ada@example.com"
    body = {"to": address, "subject": "Your invoice", "template": "invoice", "data": {"amount": 42}}
    response = flow.http.post("/emails", json=body)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    job_id = response.json()["jobId"]
    flow.join()

    [email] = emails_to(flow, address)
    assert email["id"] == f"email-{job_id}"
    assert (email["subject"], email["template"], email["data"]) == ("Your invoice", "invoice", {"amount": 42})
    assert (email["status"], email["priority"]) == ("sent", "normal")
    assert emails_to(flow, "someone-else@example.com") == []

    assert flow.http.post("/emails", json={**body, "to": "nobody"}).status_code == 400
    flow.join()
    assert len(flow.sent_to("SendEmail")) == 1  # the refused one was not queued


def test_image_queue_applies_the_operations_in_order(flow):
    image_id = "img-1"
    response = flow.http.post("/images", json={"imageId": image_id, "operations": ["resize", "crop", "watermark"]})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert response.headers["location"] == f"/images/{image_id}"
    flow.join()

    image = flow.http.get(f"/images/{image_id}").json()
    assert image["status"] == "processed"
    assert [op["operation"] for op in image["operationsApplied"]] == ["resize", "crop", "watermark"]
    assert flow.http.post("/images", json={"imageId": image_id, "operations": ["explode"]}).status_code == 400
    assert flow.http.get(f"/images/{image_id}").json() == image  # the refused job did not touch it
    assert flow.http.get("/images/img-unknown").status_code == 404


# --- event bus --------------------------------------------------------------------------------


def test_user_created_sends_a_welcome_email(flow):
    address = "ada@example.com"
    response = flow.http.post("/events/user.created", json={"data": {"email": address, "name": "Ada"}})
    assert response.status_code == 202
    assert response.json()["handlers"] == 1
    flow.join()

    [email] = emails_to(flow, address)
    assert (email["subject"], email["template"], email["data"]) == ("Welcome!", "welcome", {"name": "Ada"})
    [recent] = flow.http.get("/events/user.created", params={"limit": 1}).json()
    assert recent["id"] == response.json()["eventId"]
    assert recent["source"] == "api"
    assert recent["data"] == {"email": address, "name": "Ada"}


def test_order_placed_sends_a_confirmation_email_and_notifies_the_admin(flow):
    address = "grace@example.com"
    order_id = "ord-1"
    data = {"orderId": order_id, "customerId": "cust-1", "customerEmail": address, "total": 59.9, "items": []}
    response = flow.http.post("/events/order.placed", json={"data": data, "source": "orders-service"})
    assert response.status_code == 202
    assert response.json()["handlers"] == 2  # two steps subscribe to order.placed
    flow.join()

    [email] = emails_to(flow, address)
    assert (email["subject"], email["template"]) == ("Order Confirmation", "order-confirmation")
    assert email["data"]["orderId"] == order_id
    [note] = flow.http.get("/notifications/admin").json()
    assert note["message"] == f"Order #{order_id} placed"
    assert (note["type"], note["title"], note["link"]) == ("info", "New Order", f"/admin/orders/{order_id}")
    [event] = flow.http.get("/events/order.placed").json()
    assert event["source"] == "orders-service"


def test_low_inventory_raises_a_warning_notification(flow):
    product_id = "prod-1"
    data = {"productId": product_id, "productName": "Salmon kibble", "quantity": 3}
    assert flow.http.post("/events/product.inventory.low", json={"data": data}).status_code == 202
    flow.join()

    [note] = flow.http.get("/notifications/inventory-manager").json()
    assert (note["type"], note["title"], note["link"]) == ("warning", "Low Inventory", f"/admin/inventory/{product_id}")
    assert note["message"] == "Salmon kibble is running low (3 left)"
    assert flow.http.get("/notifications/admin").json() == []  # only the inventory manager is told


def test_event_bus_refuses_unknown_types_and_invalid_data(flow):
    unknown = flow.http.post("/events/user.deleted", json={"data": {}})
    assert unknown.status_code == 404
    assert "user.created" in unknown.json()["eventTypes"]

    invalid = flow.http.post("/events/user.created", json={"data": {"name": "Ada"}})
    assert invalid.status_code == 400
    assert [f["field"] for f in invalid.json()["fields"]] == ["data.email"]
    assert flow.http.get("/events/user.created").json() == []  # not kept for replay either

    # A type of the seed's bus that nothing handles yet is kept, with no handler.
    kept = flow.http.post("/events/order.shipped", json={"data": {"orderId": "o-1"}})
    assert (kept.status_code, kept.json()["handlers"]) == (202, 0)
    assert [e["id"] for e in flow.http.get("/events/order.shipped").json()] == [kept.json()["eventId"]]
    flow.join()
    assert flow.sent == []  # nothing was queued for any of them


# --- priority queue ---------------------------------------------------------------------------


def test_high_priority_emails_overtake_a_backlog_of_low_priority_ones(receiver):
    # One worker thread, kept busy by a webhook whose receiver holds the request: the emails
    # queue up behind it. With one thread the sequence numbers are exactly the sending order.
    with FlowEnvironment("flows.jobs", config=CONFIG, worker_threads=1) as flow:
        path, gate = receiver.gate()
        try:
            deliver(flow, receiver.url + path, {"hold": True})
            assert gate.arrived.wait(5), "the webhook never reached the receiver"
            for n in range(40):
                body = email_body(f"low-{n}@example.com", priority="low")
                assert flow.http.post("/emails", json=body).status_code == 202
            for n in range(5):
                body = email_body(f"high-{n}@example.com", subject="Code", template="otp", priority="high")
                assert flow.http.post("/emails", json=body).status_code == 202
        finally:
            gate.open()
        flow.join()
        sent = flow.http.get("/emails").json()

    assert len(sent) == 45
    assert [email["sequence"] for email in sent] == list(range(1, 46))
    positions = [email["sequence"] for email in sent if email["priority"] == "high"]
    # All five before the 40 low ones queued earlier, but for the two the thread had already
    # taken (a worker prefetches two messages per thread, as on RabbitMQ).
    assert max(positions) <= 7, positions
    low = [email["to"] for email in sent if email["priority"] == "low"]
    assert low == [f"low-{n}@example.com" for n in range(40)]  # among equals, first queued first out


# --- the shipped settings ---------------------------------------------------------------------


def test_shipped_config_retries_webhooks_with_backoff_and_dead_letters_them():
    deliver_settings = load_config(CONFIG).steps["DeliverWebhook"]
    assert deliver_settings.backoff == "exponential"
    assert deliver_settings.dead_letter_queue == "webhook.failed"
    assert deliver_settings.max_retries == 2  # the seed's maxAttempts = 3
