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
    ctx.logger.error("Webhook delivery failed for good", deliveryId=failed.deliveryId, error=failed.error)
    update: dict[str, object] = {"status": "failed", "error": failed.error, "failedAt": failed.failedAt}
    if failed.deadLetter is not None:
        # A record published by hand may lack it: keep the attempts DeliverWebhook counted then.
        update["attempts"] = failed.deadLetter.attempts
    ctx.state.update(WEBHOOK_DELIVERIES, failed.deliveryId, update)
