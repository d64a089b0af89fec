"""AddPendingOrder: POST /pending-orders puts an order in ``pending-orders`` for the batch processor."""

from __future__ import annotations

import secrets
from typing import Any

from conveyor import Context, Request, http, now_iso, step

from .types import PENDING_ORDERS, Error, PendingOrder, PendingOrderRequest


@step(
    name="AddPendingOrder",
    description="Queues an order for the next BatchOrderProcessor run",
    flows=["food-orders"],
    triggers=[http("POST", "/pending-orders", body=PendingOrderRequest, responses={202: PendingOrder, 400: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    body: PendingOrderRequest = request.body
    order = PendingOrder(id=body.id or f"pending-{secrets.token_hex(4)}", amount=body.amount, createdAt=now_iso())
    ctx.state.set(PENDING_ORDERS, order.id, order.model_dump(mode="json"))
    ctx.logger.info("Order waiting for the next batch", orderId=order.id, amount=order.amount)
    return {"status": 202, "body": order}
