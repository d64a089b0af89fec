"""SetInventory: PUT /inventory/{productId} sets a product's stock, which orders then decrement."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, now_iso, step

from .types import Error, Inventory, StockLevel


@step(
    name="SetInventory",
    description="Sets the stock of a product (products without stock are not tracked)",
    flows=["order-processing"],
    triggers=[http("PUT", "/inventory/:productId", body=StockLevel, responses={200: Inventory, 400: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    product_id = request.path_params["productId"]
    inventory = ctx.state.update(
        "inventory",
        product_id,
        {"productId": product_id, "stock": request.body.stock, "lastUpdated": now_iso()},
    )
    ctx.logger.info("Stock set", productId=product_id, stock=request.body.stock)
    return {"status": 200, "body": inventory}
