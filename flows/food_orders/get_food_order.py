"""GetFoodOrder: GET /food-orders/{orderId} returns a processed food order."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import FOOD_ORDERS, Error, FoodOrder


@step(
    name="GetFoodOrder",
    description="Returns a food order once ProcessFoodOrder has stored it",
    flows=["food-orders"],
    triggers=[http("GET", "/food-orders/:orderId", responses={200: FoodOrder, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    order = ctx.state.get(FOOD_ORDERS, request.path_params["orderId"])
    if order is None:
        return {"status": 404, "body": {"error": "Food order not found"}}
    return {"status": 200, "body": order}
