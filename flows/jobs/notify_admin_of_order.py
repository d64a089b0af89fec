"""NotifyAdminOfOrder: on ``order.placed``, leaves an in-app notification for the admin."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import INBOX_GROUP, Notification, OrderPlaced


@step(
    name="NotifyAdminOfOrder",
    description="Order placed -> internal notification",
    flows=["event-bus"],
    triggers=[queue("order.placed", input=OrderPlaced)],
)
def handler(event: OrderPlaced, ctx: Context) -> None:
    order_id = event.data.orderId
    notification = Notification(
        id=f"notif-{ctx.message_id}",  # a redelivered message overwrites its own notification
        userId="admin",
        type="info",
        title="New Order",
        message=f"Order #{order_id} placed",
        link=f"/admin/orders/{order_id}",
        createdAt=now_iso(),
    )
    ctx.state.set(INBOX_GROUP.format(userId=notification.userId), notification.id, notification.model_dump())
    ctx.logger.info("Admin notified", eventId=event.id, orderId=order_id)
