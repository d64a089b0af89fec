"""The food-orders flow (seed 001) on a real gateway, RabbitMQ, dramatiq workers and scheduler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.config import load_config
from tests.flow_support import FlowSystem, flow_system
from tests.system import ROOT, wait_for

# Fast retries, and both cron steps every second, fired by the real scheduler process.
EXTRA_CONFIG = """
[steps.ProcessFoodOrder]
max_retries = 2
backoff = "exponential"
retry_delay = 100
max_retry_delay = 400
dead_letter_queue = "failed-orders"
[steps.PeriodicCleanup]
cron = "* * * * * *"
[steps.BatchOrderProcessor]
cron = "* * * * * *"
concurrency = 1
"""

SEED_ORDER = {"email": "customer@example.com", "quantity": 2, "petId": "pet-123"}


@pytest.fixture(scope="module")
def food(rabbitmq, tmp_path_factory):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("food-orders"), EXTRA_CONFIG, scheduler=True) as system:
        yield system


def place(food: FlowSystem, **overrides) -> str:
    response = food.http.post("/food-orders", json={**SEED_ORDER, **overrides})
    assert response.status_code == 202, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def stored(food: FlowSystem, order_id: str, **expected) -> dict | None:
    order = food.state.get("food-orders", order_id)
    if order is None or any(order.get(k) != v for k, v in expected.items()):
        return None
    return order


def test_order_is_accepted_then_stored_and_confirmed_in_the_background(food):
    response = food.http.post("/food-orders", json=SEED_ORDER)
    assert response.status_code == 202
    assert response.json() == {"message": "Order received and is being processed", "status": "pending"}
    order_id = response.headers["location"].rsplit("/", 1)[1]
    assert order_id.startswith("food-order-")

    order = wait_for(lambda: stored(food, order_id, priority="standard"))
    assert order["status"] == "placed"
    assert order["email"] == "customer@example.com"
    assert order["quantity"] == 2 and order["petId"] == "pet-123"
    assert order["amount"] == 25.0  # 2 units at $12.50
    assert order["createdAt"].endswith("Z") and order["shipDate"].endswith("Z")
    assert food.http.get(f"/food-orders/{order_id}").json() == order

    [email] = wait_for(
        lambda: [n for n in food.state.list("food-order-notifications") if n["orderId"] == order_id] or None
    )
    assert email["email"] == "customer@example.com"
    assert email["templateId"] == "order-confirmation"
    assert email["templateData"]["id"] == order_id


def test_order_created_is_handled_by_the_high_priority_step_only_above_1000(food):
    small, large = place(food, quantity=80), place(food, quantity=81)  # $1000 exactly, then $1012.50

    small_order = wait_for(lambda: stored(food, small, priority="standard"))
    large_order = wait_for(lambda: stored(food, large, priority="high"))
    assert small_order["shipping"] == "standard" and small_order["amount"] == 1000
    assert large_order["shipping"] == "express" and large_order["amount"] == 1012.5

    # Each step got a copy of both messages and skipped the one its condition refused.
    skipped = {key: value["count"] for key, value in food.state.items("conveyor.skipped")}
    assert skipped.get("ProcessHighPriorityOrders", 0) >= 1
    assert skipped.get("ProcessStandardOrders", 0) >= 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"quantity": 2, "petId": "pet-1"}, {"email"}),
        ({**SEED_ORDER, "email": "not-an-email"}, {"email"}),
        ({**SEED_ORDER, "quantity": "2"}, {"quantity"}),
        ({**SEED_ORDER, "quantity": 0}, {"quantity"}),
        ({"email": "a@b.co", "quantity": 1}, {"petId"}),
    ],
)
def test_invalid_order_is_refused_with_400(food, body, fields):
    response = food.http.post("/food-orders", json=body)
    assert response.status_code == 400
    assert {f["field"] for f in response.json()["fields"]} == fields


def test_unknown_food_order_is_404(food):
    response = food.http.get("/food-orders/food-order-unknown")
    assert response.status_code == 404
    assert response.json() == {"error": "Food order not found"}


def test_batch_processor_drains_pending_orders_on_its_schedule(food):
    run = uuid.uuid4().hex[:8]
    ids = [f"batch-{run}-{n}" for n in range(3)]
    for n, order_id in enumerate(ids):
        response = food.http.post("/pending-orders", json={"id": order_id, "amount": 10 * (n + 1)})
        assert response.status_code == 202
        assert response.json()["status"] == "pending"

    def processed() -> list[dict] | None:
        records = [food.state.get("processed-orders", order_id) for order_id in ids]
        return records if all(records) else None

    records = wait_for(processed, timeout=30)
    assert [r["amount"] for r in records] == [10, 20, 30]
    assert {r["source"] for r in records} == {"batch"}
    assert all(food.state.get("pending-orders", order_id) is None for order_id in ids)
    assert "Fired cron step BatchOrderProcessor" in food.log("scheduler")


def test_periodic_cleanup_deletes_food_orders_older_than_30_days(food):
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    old, recent, undated = f"old-{run}", f"recent-{run}", f"undated-{run}"
    food.state.set("food-orders", old, {"id": old, "createdAt": _iso(now - timedelta(days=31))})
    food.state.set("food-orders", recent, {"id": recent, "createdAt": _iso(now - timedelta(days=29))})
    food.state.set("food-orders", undated, {"id": undated})

    wait_for(lambda: food.state.get("food-orders", old) is None, timeout=30)
    assert food.state.get("food-orders", recent) is not None
    assert food.state.get("food-orders", undated) is not None
    assert "Fired cron step PeriodicCleanup" in food.log("scheduler")
    for key in (recent, undated):
        food.state.delete("food-orders", key)


def test_order_that_keeps_failing_is_dead_lettered_for_review_and_alerts_an_admin(food):
    # RabbitMQ refuses the confirmation email, so ProcessFoodOrder fails on every attempt.
    with food.refusing("SendFoodOrderNotification"):
        order_id = place(food, petId="pet-unlucky")
        review = wait_for(lambda: food.state.get("failed-orders", order_id), timeout=30)

    assert review["needsManualReview"] is True
    assert review["email"] == "customer@example.com" and review["petId"] == "pet-unlucky"
    assert review["attempts"] == 3  # max_retries = 2
    assert review["error"].startswith(
        "PublishError: RabbitMQ did not take the message for step 'SendFoodOrderNotification'"
    )
    assert review["failedAt"].endswith("Z")

    alert = wait_for(lambda: [a for a in food.state.list("admin-alerts") if a["orderId"] == order_id] or None)[0]
    assert alert["type"] == "order-failure"
    assert alert["customerEmail"] == "customer@example.com"
    assert alert["error"] == review["error"]
    order = wait_for(lambda: stored(food, order_id, status="failed"))
    assert order["failureReason"] == review["error"]

    log = food.log("workers")
    assert log.count(f"Processing order orderId={order_id}") == 3
    assert "dead-lettered to topic 'failed-orders'" in log


def test_shipped_config_gives_process_food_order_retries_and_its_dead_letter_topic():
    settings = load_config(Path(ROOT) / "config.toml").steps
    process = settings["ProcessFoodOrder"]
    assert process.dead_letter_queue == "failed-orders"
    assert process.max_retries == 3 and process.backoff == "exponential" and process.retry_delay == 1000
    assert settings["BatchOrderProcessor"].concurrency == 1


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
