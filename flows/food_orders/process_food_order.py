"""ProcessFoodOrder: stores a food order, sends the confirmation and announces it on order.created.

If any of this raises (the state store or RabbitMQ failing), Conveyor retries the message with
backoff ([steps.ProcessFoodOrder] in config.toml); once the retries are used up the message is
dead-lettered to ``failed-orders``, where HandleFailedOrders takes it. This replaces the seed's
hand-written retry counter and setTimeout re-enqueue.
"""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import FOOD_ORDERS, FoodOrder, OrderCreated, ProcessFoodOrderEvent, is_high_value, order_amount


@step(
    name="ProcessFoodOrder",
    description="Process food orders in the background",
    flows=["food-orders"],
    triggers=[queue("process-food-order", input=ProcessFoodOrderEvent)],
    enqueues=["notification", "order.created"],
    dead_letter_queue="failed-orders",
)
def handler(event: ProcessFoodOrderEvent, ctx: Context) -> None:
    ctx.logger.info("Processing order", orderId=event.orderId, attempt=ctx.attempt)

    order = FoodOrder(
        id=event.orderId,
        email=event.email,
        quantity=event.quantity,
        petId=event.petId,
        amount=order_amount(event.quantity),
        status="placed",
        shipDate=now_iso(),
        createdAt=event.receivedAt or now_iso(),
    )
    stored = order.model_dump(mode="json", exclude_none=True)
    # A merge, not a replace: a retry must not erase what ProcessHighPriorityOrders added meanwhile.
    # A replay of a dead message (HandleFailedOrders marked the order failed) clears the failure.
    ctx.state.update(
        FOOD_ORDERS, order.id, [{"type": "merge", "value": stored}, {"type": "remove", "path": "failureReason"}]
    )

    ctx.enqueue("notification", {"email": order.email, "templateId": "order-confirmation", "templateData": stored})
    ctx.enqueue(
        "order.created",
        OrderCreated(
            orderId=order.id, email=order.email, petId=order.petId, quantity=order.quantity, amount=order.amount
        ),
        # High-value orders also jump the RabbitMQ queue, not only take the high-priority branch.
        priority="high" if is_high_value(order.amount) else "normal",
    )
    ctx.logger.info("Order processed successfully", orderId=order.id, amount=order.amount)
