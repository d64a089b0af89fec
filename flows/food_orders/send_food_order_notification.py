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
    # Keyed by the message id: a redelivered message overwrites its own record instead of adding one.
    notification_id = f"notif-{ctx.message_id}"
    ctx.state.set(
        FOOD_ORDER_NOTIFICATIONS,
        notification_id,
        {
            "id": notification_id,
            "email": notification.email,
            "templateId": notification.templateId,
            "orderId": notification.templateData.get("id"),
            "templateData": notification.templateData,
            "sentAt": now_iso(),
        },
    )
    # A real system hands the email to its mail service here.
    ctx.logger.info("Email sent", templateId=notification.templateId, orderId=notification.templateData.get("id"))
