"""The order-processing flow end to end: the seed's order through a real gateway, RabbitMQ and dramatiq workers.

The flow's behaviour (stock, failures, dead letters, redeliveries, bad input) is tested in
process in tests/test_flow_orders.py; this is the smoke test that the processes do the same.
"""

from __future__ import annotations

import time

import pytest

from devtools.processes import wait_for

pytestmark = pytest.mark.integration

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


def test_health_reports_rabbitmq_and_state(system):
    response = system.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "rabbitmq": "ok", "state": "ok"}
