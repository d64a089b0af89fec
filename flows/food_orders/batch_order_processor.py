"""BatchOrderProcessor: every five minutes, enqueues ``order.processed`` for each pending order and removes it.

Each order is removed only after RabbitMQ confirmed its message, so an order is never lost; an
order whose enqueue fails stays pending for the next run. Two runs overlapping (a run taking
longer than the interval) may enqueue an order twice, which RecordProcessedOrder absorbs:
it keys its record by order id. ``concurrency = 1`` in config.toml keeps one run at a time
per worker process.
"""

from __future__ import annotations

from pydantic import ValidationError

from conveyor import Context, PublishError, cron, step

from .types import PENDING_ORDERS, OrderProcessed, PendingOrder


@step(
    name="BatchOrderProcessor",
    description="Process pending orders in batches",
    flows=["food-orders"],
    triggers=[cron("*/5 * * * *")],  # every 5 minutes
    enqueues=["order.processed"],
)
def handler(_: None, ctx: Context) -> None:
    ctx.logger.info("Starting batch processing")
    pending = ctx.state.items(PENDING_ORDERS)
    ctx.logger.info("Found pending orders", count=len(pending))

    processed = 0
    for key, value in pending:
        try:
            order = PendingOrder.model_validate(value)
        except ValidationError as exc:
            ctx.logger.warning("Pending order is malformed; leaving it for a person", orderId=key, error=str(exc))
            continue
        try:
            ctx.enqueue("order.processed", OrderProcessed(orderId=order.id, amount=order.amount, source="batch"))
        except PublishError as exc:
            ctx.logger.error("Failed to process order", orderId=order.id, error=str(exc))
            continue
        ctx.state.delete(PENDING_ORDERS, key)
        processed += 1

    ctx.logger.info("Batch processing complete", processed=processed, found=len(pending))
