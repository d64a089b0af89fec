"""ProcessHighPriorityOrders: handles ``order.created`` only for orders worth more than $1000."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import FOOD_ORDERS, OrderCreated, is_high_value


def is_high_priority(order: OrderCreated, ctx: Context) -> bool:
    """The trigger's condition: the seed's ``isHighPriority`` (``amount > 1000``)."""
    return is_high_value(order.amount)


@step(
    name="ProcessHighPriorityOrders",
    description="Expedites orders worth more than $1000",
    flows=["food-orders"],
    triggers=[queue("order.created", input=OrderCreated, condition=is_high_priority)],
)
def handler(order: OrderCreated, ctx: Context) -> None:
    ctx.logger.info("High-value order: shipping express", orderId=order.orderId, amount=order.amount)
    ctx.state.update(
        FOOD_ORDERS, order.orderId, {"priority": "high", "shipping": "express", "prioritizedAt": now_iso()}
    )
