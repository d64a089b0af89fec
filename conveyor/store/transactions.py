"""What a state transaction is, and how the calls made inside one find it.

A transaction is opened by :meth:`StateStore.transaction` (or ``async with`` on the async API)
and kept in a context variable, so every call of the block, in its thread or task, joins it.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import StateStore


class WouldWait(Exception):
    """A call made "at once" (on an event loop) would have had to wait; it changed nothing."""


@dataclass(frozen=True)
class PendingTrigger:
    """A state trigger recorded with its write and not yet published."""

    id: int
    step: str
    change: dict[str, Any]
    trace_id: str | None


@dataclass(frozen=True)
class PendingMessage:
    """A whole Dramatiq message staged with a transaction (:meth:`StateStore.stage_message`), not yet published."""

    id: int
    #: The message as ``Message.encode()`` made it (``dramatiq.Message.decode`` reads it back).
    encoded: bytes
    delay_ms: int | None


#: What the outbox holds: a state trigger, or a staged message.
Pending = PendingTrigger | PendingMessage


@dataclass
class Transaction:
    """One open transaction: its connection and what its writes recorded for the outbox."""

    store: StateStore
    connection: Any
    pending: list[Pending] = field(default_factory=list)
    #: Tasks of one ``async with`` block may share the transaction; its connection takes one call at a time.
    busy: threading.Lock = field(default_factory=threading.Lock)
    #: The thread an ``async with`` block's calls run on (see :mod:`.async_state`).
    runner: Any = None


#: The transaction the current thread or task is inside, if any (joined by every call on its store).
current_transaction: ContextVar[Transaction | None] = ContextVar("conveyor_state_transaction", default=None)
