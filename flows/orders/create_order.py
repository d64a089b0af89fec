"""CreateOrder: POST /orders stores a pending order and enqueues it for processing."""

from __future__ import annotations

import secrets
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor import AsyncContext, PublishError, Request, http, now_iso, step

from .types import Error, Order, OrderItem


class CreateOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customerId: str = Field(min_length=1, max_length=200)
    items: list[OrderItem] = Field(min_length=1)


@step(
    name="CreateOrder",
    description="Accepts new orders and enqueues them for processing",
    flows=["order-processing"],
    triggers=[http("POST", "/orders", body=CreateOrderBody, responses={200: Order, 400: Error})],
    enqueues=["process-order"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: CreateOrderBody = request.body
    ctx.logger.info("Received new order", customerId=body.customerId, itemCount=len(body.items))

    # Rounded to two decimals, still a float: summing float prices leaves tails (0.1 * 3 = 0.30000000000000004).
    total = round(sum(item.price * item.quantity for item in body.items), 2)
    order_id = f"order-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
    order = Order(
        orderId=order_id,
        customerId=body.customerId,
        items=body.items,
        total=total,
        status="pending",
        createdAt=now_iso(),
    )
    # Persist before enqueueing, so ProcessOrder always finds the order it updates.
    await ctx.state.set("orders", order_id, order.model_dump(mode="json", exclude_none=True))
    try:
        await ctx.enqueue(
            "process-order",
            {
                "orderId": order_id,
                "customerId": body.customerId,
                "items": [item.model_dump() for item in body.items],
                "total": total,
                "timestamp": order.createdAt,
            },
        )
    except PublishError:
        # The client gets a 503 and will retry: leave no pending order that nothing will process.
        await ctx.state.delete("orders", order_id)
        raise
    ctx.logger.info("Order created and enqueued", orderId=order_id)
    return {"status": 200, "body": order.model_dump(mode="json", exclude_none=True)}
