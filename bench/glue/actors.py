"""ProcessOrder, UpdateInventory and SendNotification as plain Dramatiq actors, as the seed writes them.

``dramatiq bench.glue.actors -p 2 -t 8`` runs them. The broker has the settings Conveyor's has
(publisher confirms, the same ``max_priority`` and URL with its heartbeat) and Dramatiq's
default middleware; the gateway (``app.py``) imports this module to send ``process_order``.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from ..environment import BROKER_URL_ENV, MAX_PRIORITY_ENV
from . import QUEUES
from .state import from_environment

broker = RabbitmqBroker(
    url=os.environ.get(BROKER_URL_ENV, "amqp://guest:guest@127.0.0.1:5672/%2F"),
    confirm_delivery=True,
    max_priority=int(os.environ.get(MAX_PRIORITY_ENV, "10")),
)
dramatiq.set_broker(broker)
state = from_environment()
logger = logging.getLogger("bench.glue")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def update(group: str, key: str, **fields: Any) -> None:
    """The seed's ``state.update(group, key, [{type: 'set', ...}])``: read the value, set fields, write it back."""
    value = state.get(group, key) or {}
    value.update(fields)
    state.set(group, key, value)


@dramatiq.actor(broker=broker, queue_name=QUEUES[0])
def process_order(event: dict[str, Any]) -> None:
    order_id, customer_id = event["orderId"], event["customerId"]
    logger.info("Processing order orderId=%s customerId=%s", order_id, customer_id)
    try:
        update("orders", order_id, status="processing")
        update_inventory.send({"orderId": order_id, "items": event["items"], "timestamp": now_iso()})
        update("orders", order_id, status="completed", processedAt=now_iso())
        send_notification.send(
            {
                "orderId": order_id,
                "customerId": customer_id,
                "status": "completed",
                "message": f"Your order {order_id} has been processed successfully. Total: ${event['total']:.2f}",
            }
        )
        logger.info("Order processed successfully orderId=%s", order_id)
    except Exception:
        logger.exception("Order processing failed orderId=%s", order_id)
        update("orders", order_id, status="failed")
        send_notification.send(
            {
                "orderId": order_id,
                "customerId": customer_id,
                "status": "failed",
                "message": f"Order {order_id} processing failed. Please contact support.",
            }
        )


@dramatiq.actor(broker=broker, queue_name=QUEUES[1])
def update_inventory(event: dict[str, Any]) -> None:
    order_id, items = event["orderId"], event["items"]
    logger.info("Updating inventory orderId=%s itemCount=%d", order_id, len(items))
    for item in items:
        # Read, then write: as the seed does. Two orders for one product can read the same stock.
        inventory = state.get("inventory", item["productId"])
        current_stock = (inventory or {}).get("stock", 0)
        new_stock = max(0, current_stock - item["quantity"])
        state.set(
            "inventory",
            item["productId"],
            {"productId": item["productId"], "stock": new_stock, "lastUpdated": now_iso()},
        )
        logger.info(
            "Inventory updated productId=%s previousStock=%d newStock=%d quantity=%d",
            item["productId"],
            current_stock,
            new_stock,
            item["quantity"],
        )
    logger.info("Inventory update completed orderId=%s", order_id)


@dramatiq.actor(broker=broker, queue_name=QUEUES[2])
def send_notification(event: dict[str, Any]) -> None:
    order_id, customer_id = event["orderId"], event["customerId"]
    logger.info("Sending notification orderId=%s customerId=%s status=%s", order_id, customer_id, event["status"])
    # Keyed by the order, not by the millisecond as in the seed: one notification per order.
    notification = {
        "id": f"notif-{order_id}",
        "orderId": order_id,
        "customerId": customer_id,
        "status": event["status"],
        "message": event["message"],
        "sentAt": now_iso(),
    }
    state.set("notifications", notification["id"], notification)
    logger.info(
        "Notification sent notificationId=%s orderId=%s customerId=%s", notification["id"], order_id, customer_id
    )
    print(f"\nNOTIFICATION to customer {customer_id}: {event['message']}\n", flush=True)
