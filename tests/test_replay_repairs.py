"""A replay repairs an order whose ProcessOrder failed past its retries, and lands in the order's trace.

In process (the flow's state logic, and what a replay carries), then on real RabbitMQ with real
worker and gateway processes: an order dies, HandleFailedOrder marks it failed, the operator fixes
the fault through the API and replays the dead message from the command line or the admin API.
The fault is data the real ProcessOrder reads: a stock record that is not an object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from conveyor.ops.dlq import replay_options
from conveyor.testing import FlowEnvironment, StepEnvironment
from conveyor.worker.failures import FailureRecords
from devtools.processes import wait_for
from flows.orders import handle_failed_order, process_order
from flows.orders.types import INVENTORY_APPLIED
from tests.helpers import step_queue
from tests.operator_helpers import empty_queues, forget_records, queue_depth, run_cli, stop
from tests.system import System

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"
KEY = "test-admin-key-" + "fedcba9876543210"
BROKEN = "not an inventory record"  # ProcessOrder's stock check raises AttributeError on it


def fixed_stock(product: str) -> dict[str, Any]:
    """The record the operator writes over the broken one (PUT /inventory merges, so it cannot)."""
    return {"productId": product, "stock": 10, "lastUpdated": "2026-12-01T00:00:00.000Z"}


def order_of(product: str, quantity: int = 2) -> dict[str, Any]:
    return {"customerId": "c-replay", "items": [{"productId": product, "quantity": quantity, "price": 3}]}


def notified(state: Any, order_id: str) -> set[str]:
    return {n["status"] for n in state.list("notifications") if n["orderId"] == order_id}


# -- in process -----------------------------------------------------------------------------


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    with FlowEnvironment("flows.orders", config=CONFIG) as environment:
        yield environment


def test_a_failed_order_is_processed_again_when_its_dead_message_comes_back(flow):
    flow.state.set("inventory", "glitch", BROKEN)
    order_id = flow.http.post("/orders", json=order_of("glitch")).json()["orderId"]
    flow.join()
    [dead] = flow.dead_letters_of("ProcessOrder")
    failed = flow.state.get("orders", order_id)
    assert (failed["status"], failed["failureKind"]) == ("failed", "error")

    flow.state.set("inventory", "glitch", fixed_stock("glitch"))  # the fault, fixed
    flow.publish("process-order", dead.data)  # what the replay sends: the dead message's data
    flow.join()

    order = flow.state.get("orders", order_id)
    assert order["status"] == "completed"
    assert "failureReason" not in order and "failureKind" not in order
    assert flow.state.get("inventory", "glitch")["stock"] == 8
    assert notified(flow.state, order_id) == {"failed", "completed"}


def test_a_rejected_order_stays_rejected_when_its_message_comes_again(flow):
    flow.http.put("/inventory/scarce", json={"stock": 1})
    order_id = flow.http.post("/orders", json=order_of("scarce", quantity=5)).json()["orderId"]
    flow.join()
    [sent] = flow.sent_to("ProcessOrder")
    flow.http.put("/inventory/scarce", json={"stock": 100})

    flow.publish("process-order", sent.data)  # a redelivery, or a replay someone sent by mistake
    flow.join()

    order = flow.state.get("orders", order_id)
    assert (order["status"], order["failureKind"]) == ("failed", "rejected")
    assert flow.state.get("inventory", "scarce")["stock"] == 100
    assert notified(flow.state, order_id) == {"failed"}


def test_stock_an_earlier_attempt_took_does_not_reject_the_repair():
    with StepEnvironment() as env:
        # An attempt enqueued update-inventory (stock 2 -> 0), then failed; HandleFailedOrder marked the order.
        env.state.set("orders", "o-1", {"orderId": "o-1", "status": "failed", "failureKind": "error"})
        env.state.set("inventory", "p", {"productId": "p", "stock": 0})
        env.state.set(INVENTORY_APPLIED, "o-1", {"messageId": "m-0"})
        event = {"orderId": "o-1", "customerId": "c", "items": order_of("p")["items"], "total": 6, "timestamp": "t"}

        run = env.run(process_order.handler, event)

        assert env.state.get("orders", "o-1")["status"] == "completed"
        assert [e.topic for e in run.enqueued] == ["update-inventory", "send-notification"]
        assert run.enqueued_to("send-notification")[0]["status"] == "completed"


@pytest.mark.parametrize("order", [{"status": "completed"}, {"status": "failed", "failureKind": "rejected"}])
def test_a_dead_letter_does_not_undo_a_decided_order(order):
    with StepEnvironment() as env:  # e.g. a replay completed the order before HandleFailedOrder ran
        env.state.set("orders", "o-2", {"orderId": "o-2", **order})
        failed = {"orderId": "o-2", "customerId": "c", "error": "RuntimeError: late", "failedAt": "t"}

        run = env.run(handle_failed_order.handler, failed)

        assert env.state.get("orders", "o-2") == {"orderId": "o-2", **order}
        assert run.enqueued == []


def test_a_replay_keeps_the_trace_and_names_what_it_replays():
    options = {
        "topic": "process-order",
        "trace_id": "t" * 32,
        "span_id": "enqueue-span",
        "retries": 4,
        "eta": 123,
        "priority": "high",
        "replayed_from_message": "an-earlier-dead-one",
        "replayed_from_trace": "an-old-trace",
    }
    dead = dramatiq.Message(queue_name="q", actor_name="ProcessOrder", args=({},), kwargs={}, options=options)

    assert replay_options(dead) == {
        "topic": "process-order",
        "priority": "high",
        "trace_id": "t" * 32,
        "retries": 0,
        "replayed_from_message": dead.message_id,
        "replay_parent": "enqueue-span",
    }
    unspanned = dramatiq.Message(queue_name="q", actor_name="A", args=(), kwargs={}, options={"trace_id": "x"})
    assert "replay_parent" not in replay_options(unspanned)
    untraced = dramatiq.Message(queue_name="q", actor_name="A", args=(), kwargs={}, options={})
    assert len(replay_options(untraced)["trace_id"]) == 32  # a message from before trace ids gets one


# -- on real RabbitMQ, real processes ----------------------------------------------------------


@pytest.fixture(scope="module")
def system(rabbitmq, tmp_path_factory):
    running = System(
        tmp_path_factory.mktemp("replay-repairs"),
        rabbitmq.url,
        extra_config=f"""
[admin]
api_key = "{KEY}"
[steps.ProcessOrder]
max_retries = 1
retry_delay = 100
max_retry_delay = 100
""",
    )
    running.start_workers(processes=1, threads=4)
    running.start_gateway()
    running.http.headers["X-API-Key"] = KEY
    yield running
    stop(running)
    empty_queues(rabbitmq.url, "ProcessOrder")


def fail_an_order(system: System, rabbitmq: Any, product: str) -> tuple[str, str, str]:
    """An order whose ProcessOrder fails past its retries; returns (order id, dead message id, trace id)."""
    empty_queues(rabbitmq.url, "ProcessOrder")
    forget_records(system)
    system.state.set("inventory", product, BROKEN)
    order_id = system.http.post("/orders", json=order_of(product)).json()["orderId"]
    failed = wait_for(lambda: _with_status(system, order_id, "failed"), timeout=30, what="HandleFailedOrder's mark")
    assert failed["failureKind"] == "error" and failed["failureReason"].startswith("AttributeError")
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue('ProcessOrder')}.XQ") == 1, timeout=15)
    [message_id] = FailureRecords(system.state).for_step("ProcessOrder")
    shown = run_cli(system, "dlq", "show", "ProcessOrder", message_id, "--json")
    assert shown.returncode == 0, shown.stderr
    trace_id = json.loads(shown.stdout)["traceId"]
    wait_for(lambda: trace_status(system, trace_id) == "failed", timeout=15, what="the trace to read failed")
    return order_id, message_id, trace_id


def assert_repaired(system: System, rabbitmq: Any, order_id: str, product: str, trace_id: str) -> None:
    order = wait_for(lambda: _with_status(system, order_id, "completed"), timeout=30, what="the repaired order")
    assert "failureReason" not in order
    wait_for(lambda: system.state.get(INVENTORY_APPLIED, order_id), timeout=15, what="UpdateInventory")
    assert system.state.get("inventory", product)["stock"] == 8  # 10 - 2, taken once
    wait_for(lambda: notified(system.state, order_id) == {"failed", "completed"}, timeout=15)
    assert queue_depth(rabbitmq.url, f"{step_queue('ProcessOrder')}.XQ") == 0
    log = system.log("workers").splitlines()
    [again] = [line for line in log if "Processing a failed order again" in line and order_id in line]
    assert trace_id in again  # the replay ran in the order's own trace
    # The trace no longer reads "failed": its dead message got through on the replay.
    wait_for(lambda: trace_status(system, trace_id) == "retried", timeout=15, what="the trace to be mended")


def trace_status(system: System, trace_id: str) -> str:
    shown = run_cli(system, "trace", trace_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["status"])


def _with_status(system: System, order_id: str, status: str) -> dict[str, Any] | None:
    order = system.state.get("orders", order_id)
    return order if order is not None and order["status"] == status else None


def test_a_replay_from_the_command_line_completes_the_failed_order(system, rabbitmq):
    product = f"cli-{uuid.uuid4().hex[:8]}"
    order_id, message_id, trace_id = fail_an_order(system, rabbitmq, product)
    system.state.set("inventory", product, fixed_stock(product))  # the operator fixes the fault

    replayed = run_cli(system, "dlq", "replay", "ProcessOrder", message_id)

    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"Replayed {message_id} of ProcessOrder as ")
    assert f"(in its trace {trace_id})" in replayed.stdout
    assert_repaired(system, rabbitmq, order_id, product, trace_id)


def test_a_replay_through_the_admin_api_completes_the_failed_order(system, rabbitmq):
    product = f"api-{uuid.uuid4().hex[:8]}"
    order_id, message_id, trace_id = fail_an_order(system, rabbitmq, product)
    system.state.set("inventory", product, fixed_stock(product))

    answer = system.http.post(f"/_admin/dead-letters/ProcessOrder/{message_id}/replay")

    assert answer.status_code == 200, answer.text
    [replay] = answer.json()["replayed"]
    assert (replay["messageId"], replay["traceId"]) == (message_id, trace_id)
    assert_repaired(system, rabbitmq, order_id, product, trace_id)
