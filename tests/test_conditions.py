"""Complementary conditions route a topic's messages, as the seeds' high-value orders do."""

from __future__ import annotations

from pydantic import BaseModel

from conveyor import Context, Registry, queue, step
from tests.helpers import drain, memory_runtime, running_worker


class Order(BaseModel):
    id: str
    amount: float


def test_conditions_route_each_message_to_one_step_and_skip_quietly(tmp_path):
    registry = Registry()
    handled: dict[str, list[str]] = {"big": [], "small": []}

    @step(
        name="Big",
        triggers=[queue("order.created", input=Order, condition=lambda order, ctx: order.amount > 1000)],
        registry=registry,
    )
    def big(order: Order, ctx: Context) -> None:
        handled["big"].append(order.id)

    @step(
        name="Small",
        triggers=[queue("order.created", input=Order, condition=lambda order, ctx: order.amount <= 1000)],
        registry=registry,
    )
    def small(order: Order, ctx: Context) -> None:
        handled["small"].append(order.id)

    runtime = memory_runtime(tmp_path, registry)
    for order_id, amount in (("a", 50), ("b", 5000), ("c", 1000)):
        runtime.publisher.publish("order.created", {"id": order_id, "amount": amount})
    with running_worker(runtime):
        drain(runtime, "Big", "Small")

    assert handled == {"big": ["b"], "small": ["a", "c"]}
    assert runtime.state.get("conveyor.skipped", "Big") == {"count": 2}
    assert runtime.state.get("conveyor.skipped", "Small") == {"count": 1}
    assert runtime.broker.dead_letters == []  # skipped, not failed


def test_a_condition_that_raises_is_retried_like_a_handler_error(tmp_path):
    registry = Registry()
    calls = []

    def broken(order: Order, ctx: Context) -> bool:
        calls.append(ctx.attempt)
        raise KeyError("missing")

    step(name="Picky", triggers=[queue("t", input=Order, condition=broken)], registry=registry)(lambda o, c: None)
    runtime = memory_runtime(tmp_path, registry, '[steps.Picky]\nmax_retries = 1\nretry_delay = 1\nbackoff = "fixed"\n')
    runtime.publisher.publish("t", {"id": "x", "amount": 1})
    with running_worker(runtime):
        drain(runtime, "Picky")
    assert calls == [1, 2]
    assert len(runtime.broker.dead_letters) == 1
