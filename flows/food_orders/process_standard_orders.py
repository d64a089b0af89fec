"""ProcessStandardOrders: handles ``order.created`` for every order ProcessHighPriorityOrders leaves out."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import FOOD_ORDERS, OrderCreated, is_high_value


def is_standard_priority(order: OrderCreated, ctx: Context) -> bool:
    """The trigger's condition: the complement of ProcessHighPriorityOrders' (``amount <= 1000``)."""
    return not is_high_value(order.amount)


@step(
    name="ProcessStandardOrders",
    description="Ships orders worth $1000 or less the standard way",
    flows=["food-orders"],
    triggers=[queue("order.created", input=OrderCreated, condition=is_standard_priority)],
)
def handler(order: OrderCreated, ctx: Context) -> None:
    ctx.logger.info("Standard order", orderId=order.orderId, amount=order.amount)
    ctx.state.update(
        FOOD_ORDERS, order.orderId, {"priority": "standard", "shipping": "standard", "prioritizedAt": now_iso()}
    )
