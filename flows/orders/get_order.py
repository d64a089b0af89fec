"""GetOrder: GET /orders/{orderId} returns the stored order."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import Error, Order


@step(
    name="GetOrder",
    description="Retrieves order status",
    flows=["order-processing"],
    triggers=[http("GET", "/orders/:orderId", responses={200: Order, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    order_id = request.path_params["orderId"]
    ctx.logger.info("Fetching order", orderId=order_id)
    order = ctx.state.get("orders", order_id)
    if order is None:
        return {"status": 404, "body": {"error": "Order not found"}}
    return {"status": 200, "body": order}
