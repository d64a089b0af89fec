"""DeliverWebhook: the webhook queue's worker. POSTs the payload to the receiver with httpx.

An attempt fails when the receiver cannot be reached, does not answer within the job's
``timeoutSeconds``, or answers anything but 2xx (redirects are not followed). A failed
attempt raises, so Conveyor retries it with exponential backoff ([steps.DeliverWebhook] in
config.toml); when the retries are used up the message is dead-lettered to
``webhook.failed``, where RecordFailedWebhook marks the delivery failed.

Every attempt carries ``X-Webhook-Id`` (the same on every attempt, for the receiver to drop
duplicates) and ``X-Webhook-Attempt``.
"""

from __future__ import annotations

import httpx

from conveyor import Context, now_iso, queue, step

from .types import WEBHOOK_DELIVERIES, WebhookJob

USER_AGENT = "conveyor-webhooks/1.0"
#: Never wait longer than this to connect, whatever the job's timeout.
CONNECT_TIMEOUT = 5.0


class WebhookDeliveryError(Exception):
    """The receiver did not take the webhook; the message is retried."""


@step(
    name="DeliverWebhook",
    description="Delivers webhooks over HTTP with retries and a dead-letter queue",
    flows=["job-queues"],
    triggers=[queue("webhook.deliver", input=WebhookJob)],
    dead_letter_queue="webhook.failed",
)
def handler(job: WebhookJob, ctx: Context) -> None:
    ctx.logger.info("Delivering webhook", deliveryId=job.deliveryId, url=job.url, attempt=ctx.attempt)
    # The caller's headers, minus any that would stand in for ours: header names ignore case,
    # and a caller's "X-Webhook-Id" must not be sent beside (and before) the real one.
    own = {"user-agent": USER_AGENT, "x-webhook-id": job.deliveryId, "x-webhook-attempt": str(ctx.attempt)}
    headers = {**{name: value for name, value in job.headers.items() if name.lower() not in own}, **own}
    timeout = httpx.Timeout(job.timeoutSeconds, connect=min(job.timeoutSeconds, CONNECT_TIMEOUT))
    try:
        response = httpx.post(job.url, json=job.payload, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        error = f"POST {job.url} failed: {type(exc).__name__}: {exc}"
        _record_failed_attempt(ctx, job, error, status_code=None)
        raise WebhookDeliveryError(error) from exc

    if not response.is_success:
        error = f"POST {job.url} answered {response.status_code}"
        _record_failed_attempt(ctx, job, error, status_code=response.status_code)
        raise WebhookDeliveryError(error)

    ctx.state.update(
        WEBHOOK_DELIVERIES,
        job.deliveryId,
        [
            {"type": "set", "path": "status", "value": "delivered"},
            {"type": "set", "path": "statusCode", "value": response.status_code},
            {"type": "set", "path": "attempts", "value": ctx.attempt},
            {"type": "set", "path": "deliveredAt", "value": now_iso()},
            # A replay of a dead delivery clears what RecordFailedWebhook wrote.
            {"type": "remove", "path": "error"},
            {"type": "remove", "path": "failedAt"},
        ],
    )
    ctx.logger.info("Webhook delivered", deliveryId=job.deliveryId, statusCode=response.status_code)


def _record_failed_attempt(ctx: Context, job: WebhookJob, error: str, *, status_code: int | None) -> None:
    ctx.logger.warning("Webhook attempt failed", deliveryId=job.deliveryId, attempt=ctx.attempt, error=error)
    ctx.state.update(
        WEBHOOK_DELIVERIES,
        job.deliveryId,
        [
            # "retrying" until RecordFailedWebhook marks it failed, if this was the last attempt.
            {"type": "set", "path": "status", "value": "retrying"},
            {"type": "set", "path": "attempts", "value": ctx.attempt},
            {"type": "set", "path": "lastError", "value": error},
            {"type": "set", "path": "lastStatusCode", "value": status_code},
        ],
    )
