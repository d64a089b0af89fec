"""The food-orders flow end to end: an order and a scheduled batch through the real gateway, RabbitMQ,
dramatiq workers and scheduler.

The flow's behaviour (priorities, bad input, retries, dead letters, cleanup, the batch) is tested in
process in tests/test_flow_food_orders.py; this is the smoke test that the processes do the same.
"""

from __future__ import annotations

import time

import pytest

from devtools.processes import wait_for
from tests.flow_support import flow_system

pytestmark = pytest.mark.integration

# The batch processor every second, fired by the real scheduler process.
EXTRA_CONFIG = """
[steps.BatchOrderProcessor]
cron = "* * * * * *"
concurrency = 1
"""

SEED_ORDER = {"email": "customer@example.com", "quantity": 2, "petId": "pet-123"}


def prioritised(order: dict | None) -> dict | None:
    """The order once ProcessStandardOrders or ProcessHighPriorityOrders has handled it."""
    return order if order and "priority" in order else None


def test_an_order_is_processed_in_the_background_and_the_scheduled_batch_drains_pending_orders(
    rabbitmq, tmp_path_factory
):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("food-orders"), EXTRA_CONFIG, scheduler=True) as food:
        started = time.monotonic()
        response = food.http.post("/food-orders", json=SEED_ORDER)
        assert response.status_code == 202
        assert response.json() == {"message": "Order received and is being processed", "status": "pending"}
        location = response.headers["location"]
        order_id = location.rsplit("/", 1)[1]
        pending = food.http.post("/pending-orders", json={"id": "batch-1", "amount": 30})
        assert pending.status_code == 202

        # gateway -> process-food-order -> ProcessFoodOrder -> notification and order.created, on the workers
        order = wait_for(lambda: prioritised(food.state.get("food-orders", order_id)))
        print(f"\nPOST /food-orders to a prioritised order: {(time.monotonic() - started) * 1000:.0f} ms")
        assert (order["status"], order["amount"], order["priority"]) == ("placed", 25.0, "standard")
        assert food.http.get(location).json() == order
        [email] = wait_for(lambda: food.state.list("food-order-notifications"))
        assert (email["orderId"], email["templateId"]) == (order_id, "order-confirmation")

        # scheduler -> BatchOrderProcessor -> order.processed -> RecordProcessedOrder
        record = wait_for(lambda: food.state.get("processed-orders", "batch-1"), timeout=10)
        assert (record["amount"], record["source"]) == (30, "batch")
        # The batch removes the pending order once its message is confirmed, which may come just
        # after RecordProcessedOrder has stored the record.
        wait_for(lambda: food.state.get("pending-orders", "batch-1") is None, timeout=10)
