"""SendNotification: records (and prints) the customer notification for an order, once per order and status."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import ONCE_TTL, NotificationEvent


@step(
    name="SendNotification",
    description="Sends order notifications to customers",
    flows=["order-processing"],
    triggers=[queue("send-notification", input=NotificationEvent)],
)
def handler(event: NotificationEvent, ctx: Context) -> None:
    ctx.logger.info("Sending notification", orderId=event.orderId, customerId=event.customerId, status=event.status)
    # One notification per order and status: a redelivered or re-sent message finds it and stops.
    # create() stores it only if none is there, in one step: of two deliveries, one gets True.
    notification_id = f"notif-{event.orderId}-{event.status}"
    created = ctx.state.create(
        "notifications",
        notification_id,
        {
            "id": notification_id,
            "orderId": event.orderId,
            "customerId": event.customerId,
            "status": event.status,
            "message": event.message,
            "sentAt": now_iso(),
            "messageId": ctx.message_id,
        },
        ttl=ONCE_TTL,
    )
    if not created:
        ctx.logger.info("Notification already sent", notificationId=notification_id)
        return
    # In production this is where an email or SMS goes out (after the record, so it goes out once).
    print(f"\nNOTIFICATION to customer {event.customerId}: {event.message}\n", flush=True)
    ctx.logger.info("Notification sent", notificationId=notification_id, orderId=event.orderId)
