"""QueueWebhook: POST /webhooks records a delivery and puts it on the webhook queue."""

from __future__ import annotations

import secrets
from typing import Any

from conveyor import AsyncContext, PublishError, Request, http, now_iso, step

from .types import WEBHOOK_DELIVERIES, Error, QueueWebhookBody, WebhookDelivery, WebhookJob


@step(
    name="QueueWebhook",
    description="Enqueues a webhook for delivery with retries",
    flows=["job-queues"],
    triggers=[http("POST", "/webhooks", body=QueueWebhookBody, responses={202: WebhookDelivery, 400: Error})],
    enqueues=["webhook.deliver"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: QueueWebhookBody = request.body
    delivery = WebhookDelivery(
        deliveryId=f"whd-{secrets.token_hex(6)}", url=str(body.url), status="queued", attempts=0, createdAt=now_iso()
    )
    await ctx.state.set(WEBHOOK_DELIVERIES, delivery.deliveryId, delivery.model_dump(exclude_none=True))
    job = WebhookJob(
        deliveryId=delivery.deliveryId,
        url=delivery.url,
        payload=body.payload,
        headers=body.headers,
        timeoutSeconds=body.timeoutSeconds,
    )
    try:
        await ctx.enqueue("webhook.deliver", job)
    except PublishError:
        await ctx.state.delete(WEBHOOK_DELIVERIES, delivery.deliveryId)  # the client gets a 503 and sends again
        raise
    ctx.logger.info("Webhook queued", deliveryId=delivery.deliveryId, url=delivery.url)
    return {
        "status": 202,
        "body": delivery,
        "headers": {"location": f"/webhooks/{delivery.deliveryId}"},
    }
