"""Schemas and rules shared by the messages steps."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

#: Messages by id: text, priority, status (pending, processed, failed) and timestamps.
MESSAGES = "messages"
#: What ``message.processed`` delivered, by message id.
MESSAGE_RESULTS = "message-results"
#: Completion notifications NotifyCompletion sent, by message id.
MESSAGE_NOTIFICATIONS = "message-notifications"
#: Messages that failed for good (dead-lettered to ``message.failed``), by message id.
FAILED_MESSAGES = "failed-messages"

#: CleanupMessages deletes processed messages older than this.
RETENTION_DAYS = 30

Priority = Literal["low", "normal", "high"]

#: Simulated work per priority, in milliseconds (the seed's simulateWork).
WORK_MS: dict[str, int] = {"high": 100, "normal": 500, "low": 1000}


def process_text(text: str) -> str:
    """The seed's processText: the transformation the worker applies.

    >>> process_text("Process this message")
    'PROCESS THIS MESSAGE'
    """
    return text.upper()


class SendMessageBody(BaseModel):
    """The body of ``POST /messages``."""

    text: str = Field(min_length=1, max_length=500)
    priority: Priority = "normal"
    metadata: dict[str, str] | None = None


class MessageAccepted(BaseModel):
    messageId: str
    status: Literal["enqueued"]


class MessageSent(BaseModel):
    """What topic ``message.sent`` carries."""

    messageId: str
    text: str
    priority: Priority


class MessageProcessed(BaseModel):
    """What topic ``message.processed`` carries."""

    messageId: str
    processedText: str


class Message(BaseModel):
    """A message as stored in ``messages/<messageId>`` and returned by ``GET /messages/{messageId}``."""

    messageId: str
    text: str
    priority: Priority
    metadata: dict[str, str] | None = None
    status: Literal["pending", "processed", "failed"]
    createdAt: str
    processedAt: str | None = None
    processedText: str | None = None
    processingTime: int | None = None
    error: str | None = None
    failedAt: str | None = None


class DeadLetter(BaseModel):
    step: str
    messageId: str
    attempts: int


class FailedMessage(BaseModel):
    """What the dead-letter topic ``message.failed`` carries: the message's fields plus the error."""

    messageId: str
    text: str
    priority: Priority
    error: str
    failedAt: str
    deadLetter: DeadLetter | None = None


class Error(BaseModel):
    error: str
