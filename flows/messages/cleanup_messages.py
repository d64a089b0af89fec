"""CleanupMessages: every day at 02:00, deletes processed messages older than 30 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import Context, cron, step

from .types import MESSAGES, RETENTION_DAYS


@step(
    name="CleanupMessages",
    description="Clean up old processed messages",
    flows=["messages"],
    triggers=[cron("0 0 2 * * * *")],  # every day at 2 AM (seconds first, year last)
)
def handler(_: None, ctx: Context) -> None:
    ctx.logger.info("Starting message cleanup")
    cutoff = datetime.now(UTC) - timedelta(days=RETENTION_DAYS)
    messages = ctx.state.items(MESSAGES)

    deleted = 0
    for key, message in messages:
        if not isinstance(message, dict) or message.get("status") != "processed":
            continue
        when = _timestamp(message.get("processedAt") or message.get("createdAt"))
        if when is not None and when < cutoff:
            ctx.state.delete(MESSAGES, key)
            deleted += 1

    ctx.logger.info("Cleanup completed", totalMessages=len(messages), deletedCount=deleted)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
