"""CreateFoodOrder: POST /food-orders accepts an order and enqueues it for background processing."""

from __future__ import annotations

import secrets
import time
from typing import Any

from conveyor import AsyncContext, Request, http, now_iso, step

from .types import Error, FoodOrderRequest, OrderAccepted, ProcessFoodOrderEvent


@step(
    name="CreateFoodOrder",
    description="Accepts a pet food order and enqueues it for background processing",
    flows=["food-orders"],
    triggers=[http("POST", "/food-orders", body=FoodOrderRequest, responses={202: OrderAccepted, 400: Error})],
    enqueues=["process-food-order"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: FoodOrderRequest = request.body
    # The random suffix keeps two orders in the same millisecond apart (the seed's order-${Date.now()} would not).
    order_id = f"food-order-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
    ctx.logger.info("Order received", orderId=order_id, petId=body.petId, quantity=body.quantity)

    await ctx.enqueue(
        "process-food-order",
        ProcessFoodOrderEvent(**body.model_dump(), orderId=order_id, receivedAt=now_iso()),
    )
    return {
        "status": 202,  # Accepted for processing
        "body": {"message": "Order received and is being processed", "status": "pending"},
        # Where the order can be read once ProcessFoodOrder has stored it.
        "headers": {"location": f"/food-orders/{order_id}"},
    }
