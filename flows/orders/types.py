"""Schemas shared by the order-processing steps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: How long the "done once" marks (inventory taken, notification sent) are kept. Longer than a
#: message can come back: a retry waits at most minutes, and a dead message can be replayed
#: from its step's .XQ queue for 7 days. Without it, one mark per order piles up forever.
ONCE_TTL = timedelta(days=14)

#: Orders whose stock UpdateInventory already took, by order id: a second message for one changes nothing.
INVENTORY_APPLIED = "inventory-applied"

#: Why an order is ``failed``. ``rejected``: ProcessOrder turned it down (too little stock), which is
#: final. ``error``: processing failed past its retries (HandleFailedOrder), which a replay of the
#: dead ProcessOrder message repairs once the fault is fixed.
FailureKind = Literal["rejected", "error"]


class OrderItem(BaseModel):
    # Unknown fields are refused (a misspelt "quantiy" must not pass as a default), and
    # bounds keep a total from overflowing a float.
    model_config = ConfigDict(extra="forbid")

    productId: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1_000_000)
    price: float = Field(gt=0, le=1_000_000)


class Order(BaseModel):
    orderId: str
    customerId: str
    items: list[OrderItem]
    total: float
    status: Literal["pending", "processing", "completed", "failed"]
    createdAt: str
    processedAt: str | None = None
    failureReason: str | None = None
    failureKind: FailureKind | None = None


def is_decided(order: dict[str, Any]) -> bool:
    """Whether the stored ``order`` is finished: completed, or rejected for stock.

    An order failed by an error (``failureKind`` ``"error"``) is not: a replay repairs it. A
    ``failed`` order without a ``failureKind`` (stored before there was one) counts as decided.
    """
    status = order.get("status")
    return status == "completed" or (status == "failed" and order.get("failureKind") != "error")


class ProcessOrderEvent(BaseModel):
    orderId: str
    customerId: str
    items: list[OrderItem]
    total: float
    timestamp: str


class InventoryEvent(BaseModel):
    orderId: str
    items: list[OrderItem]
    timestamp: str


class NotificationEvent(BaseModel):
    orderId: str
    customerId: str
    status: str
    message: str


class FailedOrder(BaseModel):
    """What the dead-letter topic ``process-order.failed`` carries: the order event plus the error."""

    orderId: str
    customerId: str
    error: str
    failedAt: str


class Error(BaseModel):
    error: str


class StockLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stock: int = Field(ge=0, le=1_000_000_000)


class Inventory(BaseModel):
    productId: str
    stock: int
    lastUpdated: str
