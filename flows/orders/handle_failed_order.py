"""HandleFailedOrder: an order whose processing kept failing is marked failed and the customer told."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import FailedOrder


@step(
    name="HandleFailedOrder",
    description="Marks orders failed when ProcessOrder exhausted its retries, and notifies the customer",
    flows=["order-processing"],
    triggers=[queue("process-order.failed", input=FailedOrder)],
    enqueues=["send-notification"],
)
def handler(failed: FailedOrder, ctx: Context) -> None:
    ctx.logger.error("Order processing failed for good", orderId=failed.orderId, error=failed.error)
    if ctx.state.get("orders", failed.orderId) is None:
        ctx.logger.warning("Dead letter for an unknown order; nothing to mark", orderId=failed.orderId)
        return
    ctx.state.update(
        "orders",
        failed.orderId,
        [
            {"type": "set", "path": "status", "value": "failed"},
            {"type": "set", "path": "failureReason", "value": failed.error},
        ],
    )
    ctx.enqueue(
        "send-notification",
        {
            "orderId": failed.orderId,
            "customerId": failed.customerId,
            "status": "failed",
            "message": f"Order {failed.orderId} processing failed. Please contact support.",
        },
    )
