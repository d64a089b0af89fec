"""ProcessOrder: validates an order, marks it completed and fans out inventory and notification work."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import OrderItem, ProcessOrderEvent


@step(
    name="ProcessOrder",
    description="Processes orders in the background",
    flows=["order-processing"],
    triggers=[queue("process-order", input=ProcessOrderEvent)],
    enqueues=["update-inventory", "send-notification"],
    # Failures that outlast the retries land here; HandleFailedOrder marks the order failed.
    dead_letter_queue="process-order.failed",
)
def handler(event: ProcessOrderEvent, ctx: Context) -> None:
    ctx.logger.info("Processing order", orderId=event.orderId, customerId=event.customerId)

    shortage = _first_shortage(event.items, ctx)
    if shortage:
        # A business rejection is final: record it and tell the customer, no retry.
        ctx.state.update(
            "orders",
            event.orderId,
            [
                {"type": "set", "path": "status", "value": "failed"},
                {"type": "set", "path": "failureReason", "value": shortage},
            ],
        )
        ctx.enqueue(
            "send-notification",
            {
                "orderId": event.orderId,
                "customerId": event.customerId,
                "status": "failed",
                "message": f"Order {event.orderId} processing failed. Please contact support.",
            },
        )
        ctx.logger.warning("Order rejected", orderId=event.orderId, reason=shortage)
        return

    ctx.state.update("orders", event.orderId, [{"type": "set", "path": "status", "value": "processing"}])
    ctx.enqueue(
        "update-inventory",
        {"orderId": event.orderId, "items": [i.model_dump() for i in event.items], "timestamp": now_iso()},
    )
    ctx.state.update(
        "orders",
        event.orderId,
        [
            {"type": "set", "path": "status", "value": "completed"},
            {"type": "set", "path": "processedAt", "value": now_iso()},
        ],
    )
    ctx.enqueue(
        "send-notification",
        {
            "orderId": event.orderId,
            "customerId": event.customerId,
            "status": "completed",
            "message": f"Your order {event.orderId} has been processed successfully. Total: ${event.total:.2f}",
        },
    )
    ctx.logger.info("Order processed successfully", orderId=event.orderId)


def _first_shortage(items: list[OrderItem], ctx: Context) -> str | None:
    """Reject an order for a tracked product without enough stock (untracked products always pass).

    This check is advisory: two orders may both pass it. The stock itself stays right
    because UpdateInventory decrements atomically and never below zero.
    """
    for item in items:
        inventory = ctx.state.get("inventory", item.productId)
        if inventory is not None and inventory.get("stock", 0) < item.quantity:
            return f"insufficient stock for {item.productId}: {inventory.get('stock', 0)} < {item.quantity}"
    return None
