"""The job-queues flow (seed 004) on a real gateway, RabbitMQ and dramatiq workers.

Webhooks are delivered for real, over HTTP, to a receiver this module runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import load_config
from tests.flow_support import FlowSystem, flow_system
from tests.system import ROOT, wait_for

# Exponential backoff from 200 ms: retries after 200, 400 and 800 ms, then the dead letter.
EXTRA_CONFIG = """
[steps.DeliverWebhook]
max_retries = 3
backoff = "exponential"
retry_delay = 200
max_retry_delay = 1000
dead_letter_queue = "webhook.failed"
"""


class Receiver:
    """A webhook receiver on a free loopback port. The path says how it answers:

    ``/ok/<key>`` 200; ``/status/<code>/<key>`` always ``code``; ``/flaky/<n>/<key>`` 500 for
    the first ``n`` requests, then 200; ``/hang/<n>/<key>`` sleeps 2 s on the first ``n``
    requests (past the sender's timeout), then 200.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()}
                    )
                    seen = sum(1 for r in receiver.requests if r["path"] == self.path)
                self.answer(*receiver.behaviour(self.path, seen))

            def answer(self, status: int, delay: float) -> None:
                time.sleep(delay)
                payload = json.dumps({"received": status < 300}).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def behaviour(path: str, seen: int) -> tuple[int, float]:
        kind, *rest = path.strip("/").split("/")
        if kind == "status":
            return int(rest[0]), 0.0
        if kind == "flaky":
            return (500 if seen <= int(rest[0]) else 200), 0.0
        if kind == "hang":
            return 200, (2.0 if seen <= int(rest[0]) else 0.0)
        return 200, 0.0

    def hits(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(scope="module")
def jobs(rabbitmq, tmp_path_factory):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("jobs"), EXTRA_CONFIG) as system:
        yield system


def deliver(jobs: FlowSystem, url: str, payload: Any, **extra: Any) -> str:
    response = jobs.http.post("/webhooks", json={"url": url, "payload": payload, **extra})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return response.json()["deliveryId"]


def delivery_in(jobs: FlowSystem, delivery_id: str, *statuses: str) -> dict | None:
    delivery = jobs.http.get(f"/webhooks/{delivery_id}").json()
    return delivery if delivery.get("status") in statuses else None


def emails_to(jobs: FlowSystem, address: str) -> list[dict]:
    return jobs.http.get("/emails", params={"to": address}).json()


# --- webhooks ---------------------------------------------------------------------------------


def test_webhook_is_delivered_over_http_with_its_payload_and_headers(jobs, receiver):
    path = f"/ok/{uuid.uuid4().hex}"
    payload = {"event": "invoice.paid", "amount": 42}
    delivery_id = deliver(jobs, receiver.url + path, payload, headers={"X-Signature": "sig-123"})

    delivery = wait_for(lambda: delivery_in(jobs, delivery_id, "delivered"))
    assert (delivery["statusCode"], delivery["attempts"]) == (200, 1)
    [request] = receiver.hits(path)
    assert json.loads(request["body"]) == payload
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-signature"] == "sig-123"
    assert headers["x-webhook-id"] == delivery_id
    assert headers["x-webhook-attempt"] == "1"


def test_webhook_answered_500_is_retried_with_exponential_backoff_then_dead_lettered(jobs, receiver):
    path = f"/status/500/{uuid.uuid4().hex}"
    delivery_id = deliver(jobs, receiver.url + path, {"n": 1})

    delivery = wait_for(lambda: delivery_in(jobs, delivery_id, "failed"), timeout=30)
    assert delivery["attempts"] == 4  # the first attempt and max_retries = 3
    assert delivery["error"] == f"WebhookDeliveryError: POST {receiver.url}{path} answered 500"
    assert delivery["lastStatusCode"] == 500
    assert delivery["failedAt"].endswith("Z")

    hits = receiver.hits(path)
    assert [h["headers"]["x-webhook-attempt"] for h in hits] == ["1", "2", "3", "4"]
    assert {h["headers"]["x-webhook-id"] for h in hits} == {delivery_id}
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(hits, hits[1:], strict=False)]
    for gap, expected in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert expected * 0.9 <= gap <= expected + 1.5, gaps  # each at least its doubled delay
    assert "dead-lettered to topic 'webhook.failed'" in jobs.log("workers")


def test_webhook_that_fails_twice_then_succeeds_is_delivered_on_the_third_attempt(jobs, receiver):
    path = f"/flaky/2/{uuid.uuid4().hex}"
    delivery_id = deliver(jobs, receiver.url + path, {"n": 2})
    delivery = wait_for(lambda: delivery_in(jobs, delivery_id, "delivered"), timeout=20)
    assert (delivery["attempts"], delivery["statusCode"]) == (3, 200)
    assert delivery["lastError"].endswith("answered 500")  # the last failed attempt stays visible
    assert len(receiver.hits(path)) == 3


def test_webhook_receiver_that_does_not_answer_in_time_fails_the_attempt(jobs, receiver):
    path = f"/hang/1/{uuid.uuid4().hex}"
    delivery_id = deliver(jobs, receiver.url + path, {"n": 3}, timeoutSeconds=0.5)
    delivery = wait_for(lambda: delivery_in(jobs, delivery_id, "delivered"), timeout=20)
    assert delivery["attempts"] == 2
    assert "ReadTimeout" in delivery["lastError"]


def test_webhook_to_a_closed_port_fails_to_connect_and_is_dead_lettered(jobs):
    delivery_id = deliver(jobs, "http://127.0.0.1:9/hook", {"n": 4}, timeoutSeconds=1)
    delivery = wait_for(lambda: delivery_in(jobs, delivery_id, "failed"), timeout=30)
    assert "ConnectError" in delivery["error"]
    assert delivery.get("lastStatusCode") is None  # no answer at all


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "payload": {}}, "url"),
        ({"url": "not a url", "payload": {}}, "url"),
        ({"url": "http://127.0.0.1:9/x"}, "payload"),
        ({"url": "http://127.0.0.1:9/x", "payload": {}, "timeoutSeconds": 60}, "timeoutSeconds"),
    ],
)
def test_invalid_webhook_is_refused_with_400(jobs, body, field):
    response = jobs.http.post("/webhooks", json=body)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["fields"]] == [field]


def test_unknown_webhook_delivery_is_404(jobs):
    assert jobs.http.get("/webhooks/whd-unknown").status_code == 404


# --- email and image queues -------------------------------------------------------------------


def test_email_queue_records_the_email_as_sent(jobs):
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    body = {"to": address, "subject": "Your invoice", "template": "invoice", "data": {"amount": 42}}
    response = jobs.http.post("/emails", json=body)
    assert response.status_code == 202
    job_id = response.json()["jobId"]

    [email] = wait_for(lambda: emails_to(jobs, address))
    assert email["id"] == f"email-{job_id}"
    assert (email["subject"], email["template"], email["data"]) == ("Your invoice", "invoice", {"amount": 42})
    assert (email["status"], email["priority"]) == ("sent", "normal")
    assert jobs.http.post("/emails", json={**body, "to": "nobody"}).status_code == 400


def test_image_queue_applies_the_operations_in_order(jobs):
    image_id = f"img-{uuid.uuid4().hex[:8]}"
    response = jobs.http.post("/images", json={"imageId": image_id, "operations": ["resize", "crop", "watermark"]})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"

    image = wait_for(lambda: (i := jobs.http.get(f"/images/{image_id}").json()).get("status") == "processed" and i)
    assert [op["operation"] for op in image["operationsApplied"]] == ["resize", "crop", "watermark"]
    assert jobs.http.post("/images", json={"imageId": image_id, "operations": ["explode"]}).status_code == 400
    assert jobs.http.get("/images/img-unknown").status_code == 404


# --- event bus --------------------------------------------------------------------------------


def test_user_created_sends_a_welcome_email(jobs):
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    response = jobs.http.post("/events/user.created", json={"data": {"email": address, "name": "Ada"}})
    assert response.status_code == 202
    assert response.json()["handlers"] == 1

    [email] = wait_for(lambda: emails_to(jobs, address))
    assert (email["subject"], email["template"], email["data"]) == ("Welcome!", "welcome", {"name": "Ada"})
    recent = jobs.http.get("/events/user.created", params={"limit": 1}).json()
    assert recent[0]["id"] == response.json()["eventId"]
    assert recent[0]["source"] == "api"


def test_order_placed_sends_a_confirmation_email_and_notifies_the_admin(jobs):
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    data = {"orderId": order_id, "customerId": "cust-1", "customerEmail": address, "total": 59.9, "items": []}
    response = jobs.http.post("/events/order.placed", json={"data": data, "source": "orders-service"})
    assert response.json()["handlers"] == 2  # two steps subscribe to order.placed

    [email] = wait_for(lambda: emails_to(jobs, address))
    assert (email["subject"], email["template"]) == ("Order Confirmation", "order-confirmation")
    assert email["data"]["orderId"] == order_id

    def admin_note() -> dict | None:
        notes = jobs.http.get("/notifications/admin").json()
        return next((n for n in notes if n["message"] == f"Order #{order_id} placed"), None)

    note = wait_for(admin_note)
    assert (note["type"], note["title"], note["link"]) == ("info", "New Order", f"/admin/orders/{order_id}")


def test_low_inventory_raises_a_warning_notification(jobs):
    product_id = f"prod-{uuid.uuid4().hex[:8]}"
    data = {"productId": product_id, "productName": "Salmon kibble", "quantity": 3}
    assert jobs.http.post("/events/product.inventory.low", json={"data": data}).status_code == 202

    def warning() -> dict | None:
        notes = jobs.http.get("/notifications/inventory-manager").json()
        return next((n for n in notes if n["link"] == f"/admin/inventory/{product_id}"), None)

    note = wait_for(warning)
    assert (note["type"], note["title"]) == ("warning", "Low Inventory")
    assert note["message"] == "Salmon kibble is running low (3 left)"


def test_event_bus_refuses_unknown_types_and_invalid_data(jobs):
    unknown = jobs.http.post("/events/user.deleted", json={"data": {}})
    assert unknown.status_code == 404
    assert "user.created" in unknown.json()["eventTypes"]

    invalid = jobs.http.post("/events/user.created", json={"data": {"name": "Ada"}})
    assert invalid.status_code == 400
    assert [f["field"] for f in invalid.json()["fields"]] == ["data.email"]

    # A type of the seed's bus that nothing handles yet is kept, with no handler.
    kept = jobs.http.post("/events/order.shipped", json={"data": {"orderId": "o-1"}})
    assert (kept.status_code, kept.json()["handlers"]) == (202, 0)


# --- priority queue ---------------------------------------------------------------------------


def test_high_priority_emails_overtake_a_backlog_of_low_priority_ones(rabbitmq, tmp_path):
    with flow_system(rabbitmq, tmp_path, workers=False) as system:  # no workers yet: let a backlog build up
        run = uuid.uuid4().hex[:8]
        for n in range(40):
            body = {"to": f"low-{n}-{run}@example.com", "subject": "News", "template": "digest", "priority": "low"}
            assert system.http.post("/emails", json=body).status_code == 202
        for n in range(5):
            body = {"to": f"high-{n}-{run}@example.com", "subject": "Code", "template": "otp", "priority": "high"}
            assert system.http.post("/emails", json=body).status_code == 202

        # One thread: the sequence numbers are then exactly the order RabbitMQ delivered in (with
        # several, a thread waiting for the state store's write lock can take its number late).
        system.start_workers(threads=1)
        sent = wait_for(lambda: len(emails := system.http.get("/emails").json()) == 45 and emails, timeout=30)

    positions = [email["sequence"] for email in sent if email["priority"] == "high"]
    print(f"\nhigh-priority emails sent at positions {positions} of 45")
    assert max(positions) <= 8, positions  # all five before the 40 low ones queued earlier


def test_shipped_config_retries_webhooks_with_backoff_and_dead_letters_them():
    deliver_settings = load_config(Path(ROOT) / "config.toml").steps["DeliverWebhook"]
    assert deliver_settings.backoff == "exponential"
    assert deliver_settings.dead_letter_queue == "webhook.failed"
    assert deliver_settings.max_retries == 2  # the seed's maxAttempts = 3
