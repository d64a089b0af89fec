"""RecordFailedWebhook: marks a delivery failed once every attempt failed (the ``webhook.failed`` dead-letter topic)."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import WEBHOOK_DELIVERIES, FailedWebhook


@step(
    name="RecordFailedWebhook",
    description="Records webhook deliveries that failed for good",
    flows=["job-queues"],
    triggers=[queue("webhook.failed", input=FailedWebhook)],
)
def handler(failed: FailedWebhook, ctx: Context) -> None:
    attempts = failed.deadLetter.attempts if failed.deadLetter else None
    ctx.logger.error("Webhook delivery failed for good", deliveryId=failed.deliveryId, attempts=attempts)
    ctx.state.update(
        WEBHOOK_DELIVERIES,
        failed.deliveryId,
        [
            {"type": "set", "path": "status", "value": "failed"},
            {"type": "set", "path": "error", "value": failed.error},
            {"type": "set", "path": "failedAt", "value": failed.failedAt},
            {"type": "set", "path": "attempts", "value": attempts},
        ],
    )
