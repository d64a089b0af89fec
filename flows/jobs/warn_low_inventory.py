"""WarnLowInventory: on ``product.inventory.low``, leaves a warning for the inventory manager."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import INBOX_GROUP, InventoryLow, Notification


@step(
    name="WarnLowInventory",
    description="Low inventory alert",
    flows=["event-bus"],
    triggers=[queue("product.inventory.low", input=InventoryLow)],
)
def handler(event: InventoryLow, ctx: Context) -> None:
    product = event.data
    notification = Notification(
        id=f"notif-{ctx.message_id}",
        userId="inventory-manager",
        type="warning",
        title="Low Inventory",
        message=f"{product.productName} is running low ({product.quantity} left)",
        link=f"/admin/inventory/{product.productId}",
        createdAt=now_iso(),
    )
    ctx.state.set(INBOX_GROUP.format(userId=notification.userId), notification.id, notification.model_dump())
    ctx.logger.warning("Low inventory", productId=product.productId, quantity=product.quantity)
