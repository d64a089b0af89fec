"""The food-orders flow (seed 001), in process: the whole flow, and one step at a time.

tests/test_integration_food_orders.py runs an order, and a batch fired by the real scheduler,
through the real gateway, RabbitMQ, dramatiq workers and scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.clock import iso
from conveyor.config import load_config
from conveyor.declare.cron_expressions import parse_cron
from conveyor.testing import FlowEnvironment, StepEnvironment
from flows.food_orders import batch_order_processor, create_food_order, get_food_order, process_food_order

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

SEED_ORDER = {"email": "customer@example.com", "quantity": 2, "petId": "pet-123"}


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    """The food-orders flow with the project's config.toml (ProcessFoodOrder: 3 retries, then failed-orders)."""
    with FlowEnvironment("flows.food_orders", config=CONFIG) as environment:
        yield environment


def place(flow: FlowEnvironment, **overrides: Any) -> str:
    response = flow.http.post("/food-orders", json={**SEED_ORDER, **overrides})
    assert response.status_code == 202, response.text
    return response.headers["location"].rsplit("/", 1)[1]


def _iso(when: datetime) -> str:
    return iso(when)


# -- the whole flow ------------------------------------------------------------------------


def test_an_order_is_accepted_then_stored_and_confirmed_in_the_background(flow):
    response = flow.http.post("/food-orders", json=SEED_ORDER)
    assert response.status_code == 202
    assert response.json() == {"message": "Order received and is being processed", "status": "pending"}
    order_id = response.headers["location"].rsplit("/", 1)[1]
    assert order_id.startswith("food-order-")
    flow.join()

    order = flow.state.get("food-orders", order_id)
    assert order["status"] == "placed"
    assert order["email"] == "customer@example.com"
    assert order["quantity"] == 2 and order["petId"] == "pet-123"
    assert order["amount"] == 25.0  # 2 units at $12.50
    assert (order["priority"], order["shipping"]) == ("standard", "standard")
    assert order["createdAt"].endswith("Z") and order["shipDate"].endswith("Z")
    fetched = flow.http.get(response.headers["location"])
    assert fetched.status_code == 200 and fetched.json() == order

    [email] = flow.state.list("food-order-notifications")
    assert email["email"] == "customer@example.com"
    assert email["templateId"] == "order-confirmation"
    assert email["orderId"] == order_id and email["templateData"]["id"] == order_id


def test_order_created_is_handled_by_the_high_priority_step_only_above_1000(flow):
    small, large = place(flow, quantity=80), place(flow, quantity=81)  # $1000 exactly, then $1012.50
    flow.join()

    small_order, large_order = flow.state.get("food-orders", small), flow.state.get("food-orders", large)
    assert (small_order["priority"], small_order["shipping"], small_order["amount"]) == ("standard", "standard", 1000)
    assert (large_order["priority"], large_order["shipping"], large_order["amount"]) == ("high", "express", 1012.5)

    # Each step got a copy of both messages and skipped the one its condition refused.
    assert sorted(m.data["orderId"] for m in flow.sent_to("ProcessHighPriorityOrders")) == sorted([small, large])
    skipped = dict(flow.state.items("conveyor.skipped"))
    assert skipped == {"ProcessHighPriorityOrders": {"count": 1}, "ProcessStandardOrders": {"count": 1}}


def test_a_retried_process_food_order_sends_the_confirmation_email_once(flow):
    # The first attempt enqueues the email, then fails announcing the order; the retry enqueues both again.
    with flow.refusing("ProcessStandardOrders", times=1):
        order_id = place(flow)
        flow.join()
    assert [m.data["templateId"] for m in flow.sent_to("SendFoodOrderNotification")] == ["order-confirmation"] * 2
    [email] = flow.state.list("food-order-notifications")
    assert (email["id"], email["orderId"]) == (f"notif-{order_id}-order-confirmation", order_id)
    assert any(line.message == "Email already sent" for line in flow.logs)


def test_order_that_keeps_failing_is_dead_lettered_for_review_and_alerts_an_admin(flow):
    with flow.refusing("SendFoodOrderNotification"):  # ProcessFoodOrder fails every attempt
        order_id = place(flow, petId="pet-unlucky")
        flow.join()  # no exception: the failure goes to failed-orders, which HandleFailedOrders takes
    assert len(flow.refused) == 4

    review = flow.state.get("failed-orders", order_id)
    assert review["needsManualReview"] is True
    assert review["email"] == "customer@example.com" and review["petId"] == "pet-unlucky"
    assert review["attempts"] == 4  # max_retries = 3 in config.toml
    assert review["error"].startswith(
        "PublishError: RabbitMQ did not take the message for step 'SendFoodOrderNotification'"
    )
    assert review["failedAt"].endswith("Z")

    # The shipped backoff (1 s, 2 s, 4 s, skipped on the test's clock), then the dead-letter topic.
    assert [m.delay_ms for m in flow.sent_to("ProcessFoodOrder")] == [None, 1000, 2000, 4000]
    attempts = [line.fields["attempt"] for line in flow.logs if line.message == "Processing order"]
    assert attempts == [1, 2, 3, 4]
    [dead] = flow.dead_letters_of("ProcessFoodOrder")
    assert (dead.attempts, dead.error) == (4, review["error"])
    assert [m.topic for m in flow.sent_to("HandleFailedOrders")] == ["failed-orders"]

    [alert] = flow.state.list("admin-alerts")
    assert alert["type"] == "order-failure" and alert["orderId"] == order_id
    assert alert["customerEmail"] == "customer@example.com"
    assert alert["error"] == review["error"]
    order = flow.state.get("food-orders", order_id)  # stored by the first attempt, before it failed
    assert order["status"] == "failed" and order["failureReason"] == review["error"]
    assert flow.sent_to("ProcessStandardOrders") == []  # never announced on order.created


def test_a_dead_order_replayed_once_the_fault_is_gone_is_placed_without_its_failure(flow):
    with flow.refusing("SendFoodOrderNotification"):
        order_id = place(flow)
        flow.join()
    assert flow.state.get("food-orders", order_id)["status"] == "failed"

    [dead] = flow.dead_letters_of("ProcessFoodOrder")
    flow.publish("process-food-order", dead.data)  # what a replay sends: the dead message's data
    flow.join()
    order = flow.state.get("food-orders", order_id)
    assert order["status"] == "placed" and "failureReason" not in order


def test_batch_processor_drains_pending_orders_when_it_fires(flow):
    ids = [f"batch-{n}" for n in range(3)]
    for n, order_id in enumerate(ids):
        response = flow.http.post("/pending-orders", json={"id": order_id, "amount": 10 * (n + 1)})
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
    assert len(flow.state.list("pending-orders")) == 3

    flow.fire("BatchOrderProcessor")  # as the scheduler does every five minutes
    flow.join()

    records = [flow.state.get("processed-orders", order_id) for order_id in ids]
    assert [r["amount"] for r in records] == [10, 20, 30]
    assert {r["source"] for r in records} == {"batch"}
    assert flow.state.list("pending-orders") == []


def test_periodic_cleanup_deletes_food_orders_older_than_30_days(flow):
    now = datetime.now(UTC)
    flow.state.set("food-orders", "old", {"id": "old", "createdAt": _iso(now - timedelta(days=31))})
    flow.state.set("food-orders", "recent", {"id": "recent", "createdAt": _iso(now - timedelta(days=29))})
    flow.state.set("food-orders", "undated", {"id": "undated"})

    flow.fire("PeriodicCleanup")  # as the scheduler does at midnight
    flow.join()

    assert sorted(key for key, _ in flow.state.items("food-orders")) == ["recent", "undated"]
    [warning] = [line for line in flow.logs if line.level == "WARNING" and line.step == "PeriodicCleanup"]
    assert warning.fields["orderId"] == "undated"


def test_the_cron_steps_are_scheduled_as_shipped():
    with FlowEnvironment("flows.food_orders", config=CONFIG) as flow:
        schedules = {step.name: expression for step, expression in flow.runtime.cron_steps()}
        timezone = flow.runtime.config.scheduler.timezone
    assert schedules == {"PeriodicCleanup": "0 0 * * *", "BatchOrderProcessor": "*/5 * * * *"}
    after = datetime(2025, 3, 1, 13, 2, 30, tzinfo=UTC)
    next_runs = {
        name: parse_cron(expr, timezone=timezone).get_next_fire_time(None, after) for name, expr in schedules.items()
    }
    assert next_runs["BatchOrderProcessor"] == datetime(2025, 3, 1, 13, 5, tzinfo=UTC)
    assert next_runs["PeriodicCleanup"] == datetime(2025, 3, 2, 0, 0, tzinfo=UTC)


def test_shipped_config_gives_process_food_order_retries_and_its_dead_letter_topic():
    settings = load_config(CONFIG).steps
    process = settings["ProcessFoodOrder"]
    assert process.dead_letter_queue == "failed-orders"
    assert process.max_retries == 3 and process.backoff == "exponential" and process.retry_delay == 1000
    assert settings["BatchOrderProcessor"].concurrency == 1


# -- one step at a time --------------------------------------------------------------------


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
def test_invalid_order_is_refused_with_400_and_nothing_is_enqueued(body, fields):
    with StepEnvironment() as env:
        answer = env.request(create_food_order.handler, json=body)
        assert answer.status == 400
        assert {f["field"] for f in answer.body["fields"]} == fields
        assert answer.enqueued == []


def test_create_food_order_enqueues_the_order_and_stores_nothing():
    with StepEnvironment() as env:
        answer = env.request(create_food_order.handler, json=SEED_ORDER)
        assert answer.status == 202
        order_id = answer.headers["location"].rsplit("/", 1)[1]
        [event] = answer.enqueued_to("process-food-order")
        assert event == {**SEED_ORDER, "orderId": order_id, "receivedAt": event["receivedAt"]}
        assert event["receivedAt"].endswith("Z")
        assert env.state.list("food-orders") == []  # GET answers 404 until ProcessFoodOrder stored it


def test_unknown_food_order_is_404():
    with StepEnvironment() as env:
        answer = env.request(get_food_order.handler, path_params={"orderId": "food-order-unknown"})
        assert answer.status == 404
        assert answer.body == {"error": "Food order not found"}


def test_a_retried_process_food_order_keeps_its_priority_and_creation_time():
    with StepEnvironment() as env:
        # ProcessHighPriorityOrders already ran for an earlier attempt that failed after announcing the order.
        env.state.set("food-orders", "o-1", {"id": "o-1", "priority": "high", "shipping": "express"})
        event = {**SEED_ORDER, "quantity": 81, "orderId": "o-1", "receivedAt": "2025-03-01T12:00:00.000Z"}
        run = env.run(process_food_order.handler, event, attempt=2)

        order = env.state.get("food-orders", "o-1")
        assert (order["status"], order["priority"], order["shipping"]) == ("placed", "high", "express")
        assert order["createdAt"] == "2025-03-01T12:00:00.000Z"
        [created] = [e for e in run.enqueued if e.topic == "order.created"]
        assert created.priority == "high"  # a high-value order also jumps the queue


def test_a_standard_order_is_announced_at_normal_priority():
    with StepEnvironment() as env:
        run = env.run(process_food_order.handler, {**SEED_ORDER, "quantity": 80, "orderId": "o-2"})
        [created] = [e for e in run.enqueued if e.topic == "order.created"]
        assert (created.data["amount"], created.priority) == (1000, "normal")


def test_batch_processor_leaves_a_malformed_pending_order_for_a_person():
    with StepEnvironment() as env:
        env.state.set("pending-orders", "ok", {"id": "ok", "amount": 5})
        env.state.set("pending-orders", "bad", {"id": "bad", "amount": "lots"})
        run = env.run(batch_order_processor.handler)
        assert run.enqueued_to("order.processed") == [{"orderId": "ok", "amount": 5, "source": "batch"}]
        assert [key for key, _ in env.state.items("pending-orders")] == ["bad"]
        assert any(line.level == "WARNING" and line.fields.get("orderId") == "bad" for line in run.logs)
