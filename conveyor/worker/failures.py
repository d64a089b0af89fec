"""Failure records: why each dead message failed, kept in the state store (``.XQ`` holds only the message).

The :class:`~conveyor.worker.middleware.DeadLetters` middleware writes one record per message
that fails for good; :mod:`conveyor.ops.dlq` joins them with the messages in the step's
dead-letter queue (``<Step>.XQ``) by message id, and removes them when it replays or purges
those messages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL

if TYPE_CHECKING:
    from ..store import StateStore

#: The state group holding the records, keyed by message id.
GROUP = "conveyor.dead-letters"

#: A record lives as long as RabbitMQ keeps its message in the .XQ queue (7 days), then expires.
RECORD_TTL = timedelta(milliseconds=DEAD_MESSAGE_TTL)


class FailureRecords:
    """The failure records of dead messages, by message id.

    A record is ``{"messageId", "step", "topic", "traceId", "error", "traceback", "attempts",
    "failedAt"}``: ``traceback`` is the traceback's last line, ``attempts`` counts the first run.

    Parameters:
      state: the runtime's state store.
    """

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def save(self, record: dict[str, Any]) -> None:
        """Keep ``record`` under its ``messageId``, replacing an older one."""
        self.state.set(GROUP, record["messageId"], record, ttl=RECORD_TTL)

    def get(self, message_id: str) -> dict[str, Any] | None:
        """The record of ``message_id``, or ``None`` if none was kept."""
        value = self.state.get(GROUP, message_id)
        return value if isinstance(value, dict) else None

    def for_step(self, step: str) -> dict[str, dict[str, Any]]:
        """Every record of ``step``, by message id."""
        return {key: value for key, value in self.state.items(GROUP) if value.get("step") == step}

    def delete(self, message_id: str) -> None:
        """Forget the record of ``message_id`` (no error if there is none)."""
        self.state.delete(GROUP, message_id)

    def delete_step(self, step: str) -> int:
        """Forget every record of ``step``; returns how many there were."""
        keys = list(self.for_step(step))
        for key in keys:
            self.state.delete(GROUP, key)
        return len(keys)
