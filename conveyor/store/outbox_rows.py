"""The outbox table's calls, shared by both backends (a part of :class:`~conveyor.store.StateStore`).

A row is a state trigger (recorded by a write to a watched group, see ``StateStore._changed``)
or a whole staged message (:meth:`OutboxRows.stage_message`). Both are claimed by the writing
process at once, published by it right after the commit, and deleted once RabbitMQ confirmed
them; a row whose claim lapsed is the sweep's (:mod:`.outbox`).
"""

from __future__ import annotations

import builtins
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import dramatiq

from .transactions import Pending, PendingMessage, PendingTrigger
from .values import decode

if TYPE_CHECKING:
    from .transactions import Transaction

#: How long a published-but-unconfirmed outbox row stays claimed before a sweep may take it.
CLAIM_LEASE = 10.0


class OutboxRows:
    """Stage messages, and look at, claim and forget outbox rows."""

    _skip_locked: ClassVar[str]

    if TYPE_CHECKING:  # what StateStore supplies

        def _writing(self) -> AbstractContextManager[Transaction]: ...
        def _reader(self) -> AbstractContextManager[Any]: ...
        def _sql(self, statement: str) -> str: ...

    def stage_message(self, encoded: bytes | str, *, delay_ms: int | None = None) -> None:
        """Stage a whole Dramatiq message, published right after the transaction commits.

        ``encoded`` is what ``Message.encode()`` returns. Inside :meth:`transaction` the
        message commits (or rolls back) with the block; outside, it is a transaction of its
        own. This process publishes it after the commit; if it dies first, any scheduler's
        sweep does. So a message is sent at least once, always with its own message id::

            with runtime.state.transaction():
                runtime.state.set("orders", order_id, order)
                runtime.state.stage_message(message.encode(), delay_ms=500)
        """
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        message = dramatiq.Message.decode(text.encode())  # a malformed message fails here, not in the sweep
        trace_id, now = message.options.get("trace_id"), time.time()
        with self._writing() as tx:
            # Claimed by this process at once: it publishes right after the commit.
            (row_id,) = tx.connection.execute(
                self._sql(
                    "INSERT INTO outbox (step, payload, trace_id, created_at, claimed_at, message, delay_ms) "
                    "VALUES (?, 'null', ?, ?, ?, ?, ?) RETURNING id"
                ),
                (message.actor_name, trace_id, now, now, text, delay_ms),
            ).fetchone()
            tx.pending.append(PendingMessage(row_id, text.encode(), delay_ms))

    def pending_triggers(self, limit: int = 500) -> builtins.list[PendingTrigger]:
        """State triggers recorded and not yet confirmed published, oldest first (for a look; claims nothing)."""
        return [p for p in self.pending_outbox(limit, messages=False) if isinstance(p, PendingTrigger)]

    def pending_messages(self, limit: int = 500) -> builtins.list[PendingMessage]:
        """Staged messages not yet confirmed published, oldest first (for a look; claims nothing)."""
        return [p for p in self.pending_outbox(limit, triggers=False) if isinstance(p, PendingMessage)]

    def pending_outbox(
        self, limit: int = 500, *, triggers: bool = True, messages: bool = True
    ) -> builtins.list[Pending]:
        """Everything in the outbox, oldest first: triggers, staged messages, or both."""
        where = "" if triggers and messages else " WHERE message IS NULL" if triggers else " WHERE message IS NOT NULL"
        with self._reader() as db:
            rows = db.execute(self._sql(f"SELECT {_ROW} FROM outbox{where} ORDER BY id LIMIT ?"), (limit,)).fetchall()
        return [_pending(row) for row in rows]

    def claim_outbox(self, *, lease: float = CLAIM_LEASE, limit: int = 500) -> builtins.list[Pending]:
        """Take outbox rows nobody published within ``lease`` seconds, for this process to publish.

        Each claim holds a row for ``lease`` seconds, so sweeps in any number of processes
        do not publish one twice unless a publish takes longer than that.
        """
        now = time.time()
        statement = self._sql(
            "UPDATE outbox SET claimed_at = ? WHERE id IN "
            f"(SELECT id FROM outbox WHERE claimed_at <= ? ORDER BY id LIMIT ?{self._skip_locked}) "
            f"RETURNING {_ROW}"
        )
        with self._writing() as tx:
            rows = tx.connection.execute(statement, (now, now - lease, limit)).fetchall()
        return sorted((_pending(row) for row in rows), key=_id)

    def outbox_published(self, ids: builtins.list[int]) -> None:
        """Forget outbox rows RabbitMQ has confirmed."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with self._writing() as tx:
                tx.connection.execute(
                    self._sql(f"DELETE FROM outbox WHERE id IN ({', '.join('?' * len(chunk))})"), chunk
                )


#: The outbox columns :func:`_pending` reads.
_ROW = "id, step, payload, trace_id, message, delay_ms"


def _pending(row: tuple[Any, ...]) -> Pending:
    id, step, payload, trace_id, message, delay_ms = row
    if message is not None:
        return PendingMessage(id, message.encode(), delay_ms)
    return PendingTrigger(id, step, decode(payload), trace_id)


def _id(pending: Pending) -> int:
    return pending.id
