"""ProcessOrder: validates an order, marks it completed and fans out inventory and notification work."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import INVENTORY_APPLIED, OrderItem, ProcessOrderEvent, is_decided


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

    # A redelivery (worker crash) or a retry may find the order already decided: finish the
    # job by (re)sending its notification, which SendNotification keeps to one per status.
    order = ctx.state.get("orders", event.orderId)
    if order is None:
        # CreateOrder withdraws an order whose enqueue RabbitMQ did not confirm (the client got a
        # 503 and will retry); if the message was stored after all, it must not become an order.
        ctx.logger.warning("Order was withdrawn when its POST failed; not processing it", orderId=event.orderId)
        return
    if is_decided(order):
        ctx.logger.info("Order already processed; re-sending its notification", orderId=event.orderId)
        _notify(ctx, event, order["status"])
        return
    if order.get("status") == "failed":
        # HandleFailedOrder marked it after the retries ran out; this is the dead message's replay.
        ctx.logger.info("Processing a failed order again", orderId=event.orderId, failure=order.get("failureReason"))

    # Stock already taken for this order (an attempt failed after enqueueing it) is not checked
    # again: the order would otherwise be rejected for the stock it took itself.
    taken = ctx.state.get(INVENTORY_APPLIED, event.orderId) is not None
    shortage = None if taken else _first_shortage(event.items, ctx)
    if shortage:
        # A business rejection is final: record it and tell the customer, no retry.
        ctx.state.update(
            "orders",
            event.orderId,
            [
                {"type": "set", "path": "status", "value": "failed"},
                {"type": "set", "path": "failureReason", "value": shortage},
                {"type": "set", "path": "failureKind", "value": "rejected"},
            ],
        )
        _notify(ctx, event, "failed")
        ctx.logger.warning("Order rejected", orderId=event.orderId, reason=shortage)
        return

    ctx.state.update(
        "orders",
        event.orderId,
        [
            {"type": "set", "path": "status", "value": "processing"},
            # What a failure past the retries left (HandleFailedOrder) goes once the order is processed again.
            {"type": "remove", "path": "failureReason"},
            {"type": "remove", "path": "failureKind"},
        ],
    )
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
    _notify(ctx, event, "completed")
    ctx.logger.info("Order processed successfully", orderId=event.orderId)


def _notify(ctx: Context, event: ProcessOrderEvent, status: str) -> None:
    message = (
        f"Your order {event.orderId} has been processed successfully. Total: ${event.total:.2f}"
        if status == "completed"
        else f"Order {event.orderId} processing failed. Please contact support."
    )
    ctx.enqueue(
        "send-notification",
        {"orderId": event.orderId, "customerId": event.customerId, "status": status, "message": message},
    )


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
