"""RecordProcessedOrder: records each order the batch processor sent on ``order.processed``."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import PROCESSED_ORDERS, OrderProcessed


@step(
    name="RecordProcessedOrder",
    description="Records orders processed in batches",
    flows=["food-orders"],
    triggers=[queue("order.processed", input=OrderProcessed)],
)
def handler(order: OrderProcessed, ctx: Context) -> None:
    # Keyed by order id, so an order enqueued twice is recorded once.
    ctx.state.set(PROCESSED_ORDERS, order.orderId, {**order.model_dump(mode="json"), "processedAt": now_iso()})
    ctx.logger.info("Order processed", orderId=order.orderId, amount=order.amount, source=order.source)
