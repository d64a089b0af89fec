"""Schemas and rules shared by the job-queue and event-bus steps."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, RootModel
from pydantic_core import PydanticCustomError

#: Emails SendEmail recorded as sent, by ``email-<messageId>``.
EMAILS = "emails"
#: Holds the counter that numbers sent emails in the order they went out.
EMAIL_COUNTER = "email-counter"
#: Images by id: the operations asked for and, once processed, applied.
IMAGES = "images"
#: Webhook deliveries by id: status, attempts, last error.
WEBHOOK_DELIVERIES = "webhook-deliveries"
#: Events published on the bus, one group per type (the seed's ``events:<type>`` list).
EVENTS_GROUP = "events:{type}"
#: How many events of each type are kept for replay.
EVENT_HISTORY = 1000
#: In-app notifications, one group per user (``inbox:admin``, ``inbox:inventory-manager``).
INBOX_GROUP = "inbox:{userId}"

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError("email", "Input should be an email address such as name@example.com")
    return value


#: An email address of the form name@domain.tld (a pattern, not a deliverability check).
Email = Annotated[str, Field(max_length=254), AfterValidator(_email)]
#: A message priority: RabbitMQ delivers high before normal before low.
Priority = Literal["low", "normal", "high"]
ImageOperation = Literal["resize", "crop", "rotate", "thumbnail", "watermark", "compress", "grayscale"]

#: Every event type of the seed's bus. Publishing any is allowed; only some have handlers.
EventType = Literal[
    "user.created", "user.updated", "order.placed", "order.shipped", "payment.received", "product.inventory.low"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
#: The event types with at least one subscribing step (each is a topic).
HANDLED_EVENT_TYPES = ("user.created", "order.placed", "product.inventory.low")


# --- email queue ------------------------------------------------------------------------------


class EmailJob(BaseModel):
    """What topic ``email.send`` carries (the seed's emailQueue payload)."""

    to: str
    subject: str
    template: str
    data: dict[str, Any] = {}
    priority: Priority = "normal"


class QueueEmailBody(BaseModel):
    """The body of ``POST /emails``."""

    to: Email
    subject: str = Field(min_length=1, max_length=200)
    template: str = Field(min_length=1, max_length=100)
    data: dict[str, Any] = {}
    priority: Priority = "normal"


class JobQueued(BaseModel):
    jobId: str
    status: Literal["queued"]


# --- image queue ------------------------------------------------------------------------------


class ImageJob(BaseModel):
    """What topic ``image.process`` carries, and the body of ``POST /images``."""

    imageId: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    operations: list[ImageOperation] = Field(min_length=1, max_length=20)


class Image(BaseModel):
    """An image as stored in ``images/<imageId>`` and returned by ``GET /images/{imageId}``."""

    imageId: str
    operations: list[ImageOperation]
    status: Literal["queued", "processed"]
    queuedAt: str
    operationsApplied: list[dict[str, str]] | None = None
    processedAt: str | None = None
    attempts: int | None = None


# --- webhook queue ----------------------------------------------------------------------------


class QueueWebhookBody(BaseModel):
    """The body of ``POST /webhooks``."""

    url: AnyHttpUrl
    payload: Any
    headers: dict[str, str] = {}
    #: Seconds to wait for the receiver (connect and each read) before the attempt fails.
    timeoutSeconds: float = Field(default=10.0, gt=0, le=30)


class WebhookJob(BaseModel):
    """What topic ``webhook.deliver`` carries."""

    deliveryId: str
    url: str
    payload: Any
    headers: dict[str, str] = {}
    timeoutSeconds: float = 10.0


class DeadLetter(BaseModel):
    step: str
    messageId: str
    attempts: int


class FailedWebhook(BaseModel):
    """What the dead-letter topic ``webhook.failed`` carries."""

    deliveryId: str
    url: str
    error: str
    failedAt: str
    deadLetter: DeadLetter | None = None


class WebhookDelivery(BaseModel):
    """A delivery as stored in ``webhook-deliveries/<deliveryId>``."""

    deliveryId: str
    url: str
    status: Literal["queued", "retrying", "delivered", "failed"]
    attempts: int
    createdAt: str
    statusCode: int | None = None
    lastStatusCode: int | None = None
    lastError: str | None = None
    deliveredAt: str | None = None
    error: str | None = None
    failedAt: str | None = None


# --- event bus --------------------------------------------------------------------------------


class PublishEventBody(BaseModel):
    """The body of ``POST /events/{type}``."""

    data: dict[str, Any]
    source: str = Field(default="api", min_length=1, max_length=100)


class _EventData(BaseModel):
    # Fields beyond the ones a handler needs travel with the event.
    model_config = ConfigDict(extra="allow")


class UserCreatedData(_EventData):
    email: Email
    name: str = Field(min_length=1)
    userId: str | None = None


class OrderPlacedData(_EventData):
    orderId: str = Field(min_length=1)
    customerId: str = Field(min_length=1)
    customerEmail: Email
    total: float = Field(ge=0)
    items: list[Any] = []


class InventoryLowData(_EventData):
    productId: str = Field(min_length=1)
    productName: str = Field(min_length=1)
    quantity: int = Field(ge=0)


#: The data each handled event type must carry; other types take any object.
EVENT_DATA: dict[str, type[_EventData]] = {
    "user.created": UserCreatedData,
    "order.placed": OrderPlacedData,
    "product.inventory.low": InventoryLowData,
}


class _EventEnvelope(BaseModel):
    """What every event carries besides its data (the seed's ``Event<T>``)."""

    id: str
    type: str
    timestamp: int
    source: str


class Event(_EventEnvelope):
    """An event as published, whatever its type."""

    data: dict[str, Any]


class UserCreated(_EventEnvelope):
    data: UserCreatedData


class OrderPlaced(_EventEnvelope):
    data: OrderPlacedData


class InventoryLow(_EventEnvelope):
    data: InventoryLowData


class EventList(RootModel[list[Event]]):
    """What ``GET /events/{type}`` answers, newest first."""


class EventPublished(BaseModel):
    eventId: str
    type: str
    handlers: int


class Notification(BaseModel):
    """An in-app notification (the seed's ``createNotification``)."""

    id: str
    userId: str
    type: Literal["info", "warning", "error"]
    title: str
    message: str
    link: str | None = None
    read: bool = False
    createdAt: str


class NotificationList(RootModel[list[Notification]]):
    """What ``GET /notifications/{userId}`` answers, newest first."""


class Error(BaseModel):
    error: str


class FieldError(BaseModel):
    field: str
    reason: str


class EventError(BaseModel):
    """An event refused: an unknown type (with the known ones) or data that fails its type's schema."""

    error: str
    eventTypes: list[str] | None = None
    fields: list[FieldError] | None = None
