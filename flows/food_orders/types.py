"""Schemas and rules shared by the food-orders steps."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

#: The state group this flow keeps its orders in ("orders" belongs to the order-processing flow).
FOOD_ORDERS = "food-orders"
#: Orders the batch processor drains every five minutes.
PENDING_ORDERS = "pending-orders"
#: What the batch processor's ``order.processed`` messages end up as.
PROCESSED_ORDERS = "processed-orders"
#: Dead-lettered orders kept for a person to look at.
FAILED_ORDERS = "failed-orders"
#: Confirmation emails sent (one record per ``notification`` message).
FOOD_ORDER_NOTIFICATIONS = "food-order-notifications"
#: Alerts raised to administrators.
ADMIN_ALERTS = "admin-alerts"

#: The price of one unit of pet food, in dollars: an order's amount is quantity times this.
PRICE_PER_UNIT = 12.5
#: Orders worth more than this (in dollars) are high-priority.
HIGH_VALUE_AMOUNT = 1000
#: PeriodicCleanup deletes food orders created longer ago than this.
RETENTION_DAYS = 30

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError("email", "Input should be an email address such as name@example.com")
    return value


def _whole_numbers_as_int(value: float) -> float:
    # A strict float field turns JSON's 2 into 2.0; keep it 2 so stored orders read as sent.
    return int(value) if value.is_integer() else value


#: An email address of the form name@domain.tld (a pattern, not a deliverability check).
Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]
#: A number in a message or a stored order; a whole number stays an int (2, not 2.0).
Number = int | float
#: A JSON number greater than 0; strings and booleans are refused, as zod's z.number() does.
Quantity = Annotated[float, Field(gt=0, strict=True), AfterValidator(_whole_numbers_as_int)]


def order_amount(quantity: float) -> float:
    """What an order of ``quantity`` units costs, in dollars, rounded to cents.

    >>> order_amount(2), order_amount(100)
    (25.0, 1250.0)
    """
    return round(quantity * PRICE_PER_UNIT, 2)


def is_high_value(amount: float) -> bool:
    """The seed's ``isHighPriority``: more than $1000."""
    return amount > HIGH_VALUE_AMOUNT


class FoodOrderRequest(BaseModel):
    """The body of ``POST /food-orders``."""

    email: Email
    quantity: Quantity
    petId: str = Field(min_length=1)


class OrderAccepted(BaseModel):
    message: str
    status: Literal["pending"]


class ProcessFoodOrderEvent(BaseModel):
    """What topic ``process-food-order`` carries."""

    email: str
    quantity: Number
    petId: str
    orderId: str
    #: When the gateway accepted the order (kept across retries as the order's createdAt).
    receivedAt: str | None = None


class FoodOrder(BaseModel):
    """A food order as stored in ``food-orders/<id>`` and returned by ``GET /food-orders/{orderId}``."""

    id: str
    email: str
    quantity: Number
    petId: str
    amount: Number
    status: Literal["placed", "failed"]
    shipDate: str
    createdAt: str
    priority: Literal["high", "standard"] | None = None
    shipping: Literal["express", "standard"] | None = None
    prioritizedAt: str | None = None
    failureReason: str | None = None


class NotificationEvent(BaseModel):
    """What topic ``notification`` carries: an email to send from a template."""

    email: str
    templateId: str
    templateData: dict[str, Any] = {}


class OrderCreated(BaseModel):
    """What topic ``order.created`` carries."""

    orderId: str
    email: str
    petId: str
    quantity: Number
    amount: Number


class PendingOrderRequest(BaseModel):
    """The body of ``POST /pending-orders``."""

    id: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    amount: Annotated[float, Field(ge=0, strict=True), AfterValidator(_whole_numbers_as_int)]


class PendingOrder(BaseModel):
    """An order waiting in ``pending-orders`` for the batch processor."""

    id: str
    amount: Number
    status: str = "pending"
    createdAt: str | None = None


class OrderProcessed(BaseModel):
    """What topic ``order.processed`` carries."""

    orderId: str
    amount: Number
    source: str


class DeadLetter(BaseModel):
    """The part of a dead-letter record that says where and how often the message failed."""

    step: str
    messageId: str
    attempts: int


class FailedFoodOrder(BaseModel):
    """What the dead-letter topic ``failed-orders`` carries: the order's fields plus the error."""

    orderId: str
    email: str
    error: str
    failedAt: str
    petId: str | None = None
    quantity: Number | None = None
    deadLetter: DeadLetter | None = None


class AdminAlert(BaseModel):
    """What topic ``alert-admin`` carries."""

    type: str
    orderId: str
    customerEmail: str
    error: str


class Error(BaseModel):
    error: str
