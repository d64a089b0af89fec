"""The order-processing flow over HTTP, through a real gateway, RabbitMQ and dramatiq workers."""

from __future__ import annotations

import time

from tests.system import wait_for

SEED_ORDER = {
    "customerId": "customer-123",
    "items": [
        {"productId": "prod-1", "quantity": 2, "price": 19.99},
        {"productId": "prod-2", "quantity": 1, "price": 49.99},
    ],
}


def notifications_for(system, order_id: str) -> list[dict]:
    return [n for n in system.state.list("notifications") if n["orderId"] == order_id]


def test_seed_order_reaches_completed_with_inventory_and_notification(system):
    assert system.http.put("/inventory/prod-1", json={"stock": 10}).status_code == 200

    started = time.monotonic()
    response = system.http.post("/orders", json=SEED_ORDER)
    assert response.status_code == 200
    order = response.json()
    assert order["status"] == "pending"
    assert order["total"] == 89.97
    assert order["orderId"].startswith("order-")

    notified = wait_for(lambda: notifications_for(system, order["orderId"]))
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"\nPOST /orders to stored notification: {elapsed_ms:.1f} ms")
    assert notified[0]["status"] == "completed"
    assert "processed successfully" in notified[0]["message"]

    fetched = system.http.get(f"/orders/{order['orderId']}").json()
    assert fetched["status"] == "completed"
    assert "processedAt" in fetched
    wait_for(lambda: system.state.get("inventory", "prod-1")["stock"] == 8)
    assert system.state.get("inventory", "prod-2") is None  # untracked product: no stock invented


def test_order_beyond_stock_fails_and_notifies_the_customer(system):
    system.http.put("/inventory/scarce", json={"stock": 1})
    order = system.http.post(
        "/orders", json={"customerId": "c-9", "items": [{"productId": "scarce", "quantity": 5, "price": 2.5}]}
    ).json()

    notified = wait_for(lambda: notifications_for(system, order["orderId"]))
    assert notified[0]["status"] == "failed"
    fetched = system.http.get(f"/orders/{order['orderId']}").json()
    assert fetched["status"] == "failed"
    assert "insufficient stock" in fetched["failureReason"]
    assert system.state.get("inventory", "scarce")["stock"] == 1


def test_concurrent_orders_never_lose_a_decrement(system):
    system.http.put("/inventory/hot", json={"stock": 1000})
    ids = [
        system.http.post(
            "/orders", json={"customerId": f"c{i}", "items": [{"productId": "hot", "quantity": 3, "price": 1}]}
        ).json()["orderId"]
        for i in range(40)
    ]
    wait_for(lambda: all(notifications_for(system, oid) for oid in ids), timeout=60)
    wait_for(lambda: system.state.get("inventory", "hot")["stock"] == 1000 - 40 * 3)


def test_unknown_order_is_a_json_404(system):
    response = system.http.get("/orders/order-does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"error": "Order not found"}


def test_bad_order_is_rejected_and_nothing_is_stored(system):
    before = len(system.state.list("orders"))
    bad = system.http.post("/orders", json={"customerId": "c", "items": [{"productId": "p", "quantity": -1}]})
    assert bad.status_code == 400
    fields = {f["field"] for f in bad.json()["fields"]}
    assert fields == {"items.0.quantity", "items.0.price"}
    assert system.http.post("/orders", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert system.http.post("/orders", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert len(system.state.list("orders")) == before


def test_health_reports_rabbitmq_and_state(system):
    response = system.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "rabbitmq": "ok", "state": "ok"}
