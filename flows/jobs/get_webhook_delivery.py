"""GetWebhookDelivery: GET /webhooks/{deliveryId} returns a delivery's status, attempts and last error."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import WEBHOOK_DELIVERIES, Error, WebhookDelivery


@step(
    name="GetWebhookDelivery",
    description="Returns the status of a webhook delivery",
    flows=["job-queues"],
    triggers=[http("GET", "/webhooks/:deliveryId", responses={200: WebhookDelivery, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    delivery = ctx.state.get(WEBHOOK_DELIVERIES, request.path_params["deliveryId"])
    if delivery is None:
        return {"status": 404, "body": {"error": "Webhook delivery not found"}}
    return {"status": 200, "body": delivery}
