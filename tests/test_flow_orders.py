"""The order-processing flow (seed 000), in process: one step at a time, and the whole flow.

tests/test_integration_orders.py runs the seed's order once through the real gateway,
RabbitMQ and dramatiq worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.testing import FlowEnvironment, StepEnvironment
from flows.orders import create_order, process_order, send_notification, update_inventory

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

SEED_ORDER = {
    "customerId": "customer-123",
    "items": [
        {"productId": "prod-1", "quantity": 2, "price": 19.99},
        {"productId": "prod-2", "quantity": 1, "price": 49.99},
    ],
}


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    """The order flow with the project's config.toml (ProcessOrder: 4 retries, then process-order.failed)."""
    with FlowEnvironment("flows.orders", config=CONFIG) as environment:
        yield environment


def notifications(flow: FlowEnvironment, order_id: str) -> list[dict]:
    return [n for n in flow.state.list("notifications") if n["orderId"] == order_id]


# -- the whole flow ------------------------------------------------------------------------


def test_the_seed_order_is_processed_stock_taken_and_the_customer_notified(flow):
    started = time.perf_counter()
    assert flow.http.put("/inventory/prod-1", json={"stock": 10}).status_code == 200

    response = flow.http.post("/orders", json=SEED_ORDER)
    assert response.status_code == 200
    order = response.json()
    assert (order["status"], order["total"]) == ("pending", 89.97)
    flow.join()

    assert flow.http.get(f"/orders/{order['orderId']}").json()["status"] == "completed"
    assert flow.state.get("inventory", "prod-1")["stock"] == 8
    assert flow.state.get("inventory", "prod-2") is None  # untracked product: no stock invented
    [notified] = notifications(flow, order["orderId"])
    assert notified["status"] == "completed"
    assert "Total: $89.97" in notified["message"]
    print(f"\nthe seed's order, in process: {(time.perf_counter() - started) * 1000:.0f} ms")


def test_an_order_beyond_the_stock_fails_and_the_customer_is_told(flow):
    flow.http.put("/inventory/scarce", json={"stock": 1})
    order = flow.http.post(
        "/orders", json={"customerId": "c-9", "items": [{"productId": "scarce", "quantity": 5, "price": 2.5}]}
    ).json()
    flow.join()

    fetched = flow.http.get(f"/orders/{order['orderId']}").json()
    assert fetched["status"] == "failed"
    assert "insufficient stock" in fetched["failureReason"]
    assert [n["status"] for n in notifications(flow, order["orderId"])] == ["failed"]
    assert flow.state.get("inventory", "scarce")["stock"] == 1


def test_a_process_order_that_keeps_failing_is_dead_lettered_and_the_order_marked_failed(flow):
    flow.state.set("inventory", "glitch", "not an inventory record")  # ProcessOrder crashes reading it
    order = flow.http.post(
        "/orders", json={"customerId": "c-1", "items": [{"productId": "glitch", "quantity": 1, "price": 1}]}
    ).json()
    flow.join()  # no exception: the failure goes to process-order.failed, which the flow handles

    [dead] = flow.dead_letters_of("ProcessOrder")
    assert dead.attempts == 5  # max_retries = 4 in config.toml
    assert dead.error.startswith("AttributeError")
    assert flow.skipped_time > 0.5 + 1 + 2 + 4 - 1  # the backoff, skipped: 500 ms doubling
    fetched = flow.http.get(f"/orders/{order['orderId']}").json()
    assert fetched["status"] == "failed"
    assert fetched["failureReason"] == dead.error
    assert [n["status"] for n in notifications(flow, order["orderId"])] == ["failed"]


def test_concurrent_orders_never_lose_a_decrement(flow):
    flow.http.put("/inventory/hot", json={"stock": 1000})
    for i in range(40):
        flow.http.post(
            "/orders", json={"customerId": f"c{i}", "items": [{"productId": "hot", "quantity": 3, "price": 1}]}
        )
    flow.join()
    assert flow.state.get("inventory", "hot")["stock"] == 1000 - 40 * 3
    assert len(flow.state.list("notifications")) == 40


def test_bad_orders_are_refused_and_nothing_is_stored_or_queued(flow):
    bad = flow.http.post("/orders", json={"customerId": "c", "items": [{"productId": "p", "quantity": -1}]})
    assert bad.status_code == 400
    assert {f["field"] for f in bad.json()["fields"]} == {"items.0.quantity", "items.0.price"}
    assert flow.http.post("/orders", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert flow.http.post("/orders", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert flow.http.get("/orders/order-does-not-exist").json() == {"error": "Order not found"}
    flow.join()
    assert flow.state.list("orders") == [] and flow.sent == []


# -- one step at a time --------------------------------------------------------------------


def test_create_order_stores_a_pending_order_and_enqueues_it():
    with StepEnvironment() as env:
        answer = env.request(create_order.handler, json=SEED_ORDER)
        assert answer.status == 200
        order_id = answer.body["orderId"]
        assert env.state.get("orders", order_id)["status"] == "pending"
        [message] = answer.enqueued_to("process-order")
        assert (message["orderId"], message["total"]) == (order_id, 89.97)


def test_process_order_completes_the_order_and_fans_out():
    with StepEnvironment() as env:
        env.state.set("orders", "o-1", {"orderId": "o-1", "status": "pending"})
        run = env.run(process_order.handler, {**SEED_ORDER, "orderId": "o-1", "total": 89.97, "timestamp": "t"})
        assert env.state.get("orders", "o-1")["status"] == "completed"
        assert [e.topic for e in run.enqueued] == ["update-inventory", "send-notification"]
        assert run.enqueued_to("send-notification")[0]["status"] == "completed"


def test_a_redelivered_process_order_only_re_sends_the_notification():
    with StepEnvironment() as env:
        env.state.set("orders", "o-2", {"orderId": "o-2", "status": "completed"})
        run = env.run(process_order.handler, {**SEED_ORDER, "orderId": "o-2", "total": 1, "timestamp": "t"}, attempt=2)
        assert [e.topic for e in run.enqueued] == ["send-notification"]
        assert any(line.message == "Order already processed; re-sending its notification" for line in run.logs)


def test_a_withdrawn_order_is_not_processed():
    with StepEnvironment() as env:  # CreateOrder deleted it when RabbitMQ did not confirm (the client got a 503)
        run = env.run(process_order.handler, {**SEED_ORDER, "orderId": "gone", "total": 1, "timestamp": "t"})
        assert run.enqueued == [] and env.state.get("orders", "gone") is None


def test_update_inventory_takes_the_stock_once_per_order():
    with StepEnvironment() as env:
        env.state.set("inventory", "prod-1", {"productId": "prod-1", "stock": 10})
        event = {"orderId": "o-3", "items": SEED_ORDER["items"], "timestamp": "t"}
        env.run(update_inventory.handler, event)
        env.run(update_inventory.handler, event, attempt=2)  # a redelivery
        assert env.state.get("inventory", "prod-1")["stock"] == 8


def test_send_notification_keeps_one_notification_per_order_and_status():
    with StepEnvironment() as env:
        event = {"orderId": "o-4", "customerId": "c", "status": "completed", "message": "done"}
        env.run(send_notification.handler, event)
        env.run(send_notification.handler, event)
        assert [n["id"] for n in env.state.list("notifications")] == ["notif-o-4-completed"]
