"""SendOrderConfirmation: on ``order.placed``, puts the order confirmation email on the email queue."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import EmailJob, OrderPlaced


@step(
    name="SendOrderConfirmation",
    description="Order placed -> confirmation email",
    flows=["event-bus"],
    triggers=[queue("order.placed", input=OrderPlaced)],
    enqueues=["email.send"],
)
def handler(event: OrderPlaced, ctx: Context) -> None:
    ctx.enqueue(
        "email.send",
        EmailJob(
            to=event.data.customerEmail,
            subject="Order Confirmation",
            template="order-confirmation",
            data=event.data.model_dump(mode="json"),
        ),
    )
    ctx.logger.info("Order confirmation queued", eventId=event.id, orderId=event.data.orderId)
