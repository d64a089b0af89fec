"""UpdateInventory: decrements stock for each item of a processed order, once per order.

Stock is tracked for products whose stock was set (``PUT /inventory/{productId}``); items of
untracked products are skipped, where the seed created a record with stock 0 that would then
make every later order for the product look out of stock.

The seed reads the stock, then writes stock - quantity: two concurrent orders for the same
product both read the same stock and one decrement is lost. Here the decrements and the
"applied" mark for the order are one state transaction, so concurrent orders never lose a
decrement, and a redelivered or re-sent message never takes the stock twice.
"""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import INVENTORY_APPLIED as APPLIED
from .types import ONCE_TTL, InventoryEvent


@step(
    name="UpdateInventory",
    description="Updates inventory based on order items",
    flows=["order-processing"],
    triggers=[queue("update-inventory", input=InventoryEvent)],
)
def handler(event: InventoryEvent, ctx: Context) -> None:
    ctx.logger.info("Updating inventory", orderId=event.orderId, itemCount=len(event.items))
    updated: list[tuple[str, int, int]] = []
    untracked: list[str] = []
    # Only state calls inside the block: other writers wait while it runs, so the log lines come after.
    with ctx.state.transaction():
        if ctx.state.get(APPLIED, event.orderId) is not None:
            already = True
        else:
            already = False
            for item in event.items:
                if ctx.state.get("inventory", item.productId) is None:
                    untracked.append(item.productId)
                    continue
                inventory = ctx.state.update(
                    "inventory",
                    item.productId,
                    [
                        {"type": "decrement", "path": "stock", "by": item.quantity, "min": 0},
                        {"type": "set", "path": "lastUpdated", "value": now_iso()},
                    ],
                )
                updated.append((item.productId, item.quantity, inventory["stock"]))
            ctx.state.set(APPLIED, event.orderId, {"messageId": ctx.message_id, "at": now_iso()}, ttl=ONCE_TTL)
    if already:
        ctx.logger.info("Inventory already updated for this order; nothing to do", orderId=event.orderId)
        return
    for product_id in untracked:
        ctx.logger.info("Product stock is not tracked; skipping", productId=product_id)
    for product_id, quantity, stock in updated:
        ctx.logger.info("Inventory updated", productId=product_id, quantity=quantity, newStock=stock)
    ctx.logger.info("Inventory update completed", orderId=event.orderId)
