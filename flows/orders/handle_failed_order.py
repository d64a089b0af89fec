"""HandleFailedOrder: an order whose processing kept failing is marked failed and the customer told.

The mark is not final (``failureKind`` ``"error"``, where a rejection for stock is
``"rejected"``): once the fault is fixed, replaying the dead ProcessOrder message
(``python -m actors dlq replay ProcessOrder MESSAGE_ID``) processes the order again.
"""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import FailedOrder, is_decided


@step(
    name="HandleFailedOrder",
    description="Marks orders failed when ProcessOrder exhausted its retries, and notifies the customer",
    flows=["order-processing"],
    triggers=[queue("process-order.failed", input=FailedOrder)],
    enqueues=["send-notification"],
)
def handler(failed: FailedOrder, ctx: Context) -> None:
    ctx.logger.error("Order processing failed for good", orderId=failed.orderId, error=failed.error)
    with ctx.state.transaction():  # the check and the mark as one: a replay may be completing the order
        order = ctx.state.get("orders", failed.orderId)
        decided = order is not None and is_decided(order)
        if order is not None and not decided:
            ctx.state.update(
                "orders",
                failed.orderId,
                [
                    {"type": "set", "path": "status", "value": "failed"},
                    {"type": "set", "path": "failureReason", "value": failed.error},
                    # Not final: replaying the dead ProcessOrder message processes the order again.
                    {"type": "set", "path": "failureKind", "value": "error"},
                ],
            )
    if order is None:
        ctx.logger.warning("Dead letter for an unknown order; nothing to mark", orderId=failed.orderId)
        return
    if decided:
        # It completed (or was rejected) before the message died: what failed came after the
        # decision (its notification), and a replay of the dead message re-sends that.
        ctx.logger.warning("Order already decided; left as it is", orderId=failed.orderId, status=order["status"])
        return
    ctx.enqueue(
        "send-notification",
        {
            "orderId": failed.orderId,
            "customerId": failed.customerId,
            "status": "failed",
            "message": f"Order {failed.orderId} processing failed. Please contact support.",
        },
    )
