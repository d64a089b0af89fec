"""SendFoodOrderNotification: sends (here: records) the email a ``notification`` message asks for."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import FOOD_ORDER_NOTIFICATIONS, NotificationEvent


@step(
    name="SendFoodOrderNotification",
    description="Sends templated emails to customers (recorded in state)",
    flows=["food-orders"],
    triggers=[queue("notification", input=NotificationEvent)],
)
def handler(notification: NotificationEvent, ctx: Context) -> None:
    order_id = notification.templateData.get("id")
    # One email per order and template: a retried ProcessFoodOrder enqueues the confirmation again,
    # as a new message, and the customer must not get it twice. Without an order, per message.
    notification_id = f"notif-{order_id}-{notification.templateId}" if order_id else f"notif-{ctx.message_id}"
    with ctx.state.transaction():
        if ctx.state.get(FOOD_ORDER_NOTIFICATIONS, notification_id) is not None:
            ctx.logger.info("Email already sent", notificationId=notification_id)
            return
        ctx.state.set(
            FOOD_ORDER_NOTIFICATIONS,
            notification_id,
            {
                "id": notification_id,
                "email": notification.email,
                "templateId": notification.templateId,
                "orderId": order_id,
                "templateData": notification.templateData,
                "sentAt": now_iso(),
            },
        )
    # A real system hands the email to its mail service here.
    ctx.logger.info("Email sent", templateId=notification.templateId, orderId=order_id)
