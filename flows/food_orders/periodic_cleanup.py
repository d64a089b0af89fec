"""PeriodicCleanup: every day at midnight, deletes food orders created more than 30 days ago."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import Context, cron, step

from .types import FOOD_ORDERS, RETENTION_DAYS


@step(
    name="PeriodicCleanup",
    description="Clean up old food orders every day at midnight",
    flows=["food-orders"],
    triggers=[cron("0 0 * * *")],  # daily at midnight ([scheduler] timezone)
)
def handler(_: None, ctx: Context) -> None:
    ctx.logger.info("Running periodic cleanup")
    cutoff = datetime.now(UTC) - timedelta(days=RETENTION_DAYS)

    deleted = 0
    for key, order in ctx.state.items(FOOD_ORDERS):
        created = _created_at(order)
        if created is None:
            ctx.logger.warning("Food order has no readable createdAt; keeping it", orderId=key)
            continue
        if created < cutoff:
            ctx.state.delete(FOOD_ORDERS, key)
            deleted += 1

    ctx.logger.info("Cleanup complete", deletedCount=deleted)


def _created_at(order: Any) -> datetime | None:
    if not isinstance(order, dict) or not isinstance(order.get("createdAt"), str):
        return None
    try:
        created = datetime.fromisoformat(order["createdAt"])
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)
