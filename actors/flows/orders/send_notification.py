"""SendNotification: records (and prints) the customer notification for an order."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import NotificationEvent


@step(
    name="SendNotification",
    description="Sends order notifications to customers",
    flows=["order-processing"],
    triggers=[queue("send-notification", input=NotificationEvent)],
)
def handler(event: NotificationEvent, ctx: Context) -> None:
    ctx.logger.info("Sending notification", orderId=event.orderId, customerId=event.customerId, status=event.status)
    # Keyed by the message id: a redelivered message overwrites, never duplicates, its notification.
    notification_id = f"notif-{ctx.message_id}"
    ctx.state.set(
        "notifications",
        notification_id,
        {
            "id": notification_id,
            "orderId": event.orderId,
            "customerId": event.customerId,
            "status": event.status,
            "message": event.message,
            "sentAt": now_iso(),
        },
    )
    # In production this is where an email or SMS goes out.
    print(f"\nNOTIFICATION to customer {event.customerId}: {event.message}\n", flush=True)
    ctx.logger.info("Notification sent", notificationId=notification_id, orderId=event.orderId)
