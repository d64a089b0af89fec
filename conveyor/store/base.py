"""The state store's interface, and everything its two backends (SQLite, PostgreSQL) share.

A backend supplies connections and transactions; this module holds the operations, written
once in SQL both engines run: the ops, times to live, the state triggers a write records and how
calls join a :meth:`StateStore.transaction`; :mod:`.outbox_rows` adds the outbox (staged
messages, and the sweep's claims) and :mod:`.cron_fires` the claims of cron ticks.

Every write runs in a transaction of its own unless it is inside ``transaction()``, which it
then joins: the block's reads and writes are one isolated change (the backend locks what
they touch), and the triggers its writes record (and the messages it stages) commit with it.
"""

from __future__ import annotations

import abc
import builtins
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Self

from .. import faults
from ..tracing import current_trace_id
from .cron_fires import CronFires
from .ops import Ops, apply_ops
from .outbox_rows import OutboxRows
from .transactions import Pending, PendingTrigger, Transaction, current_transaction
from .values import TTL, check_names, decode, encode, expiry

#: ``fires(old_value, new_value) -> bool`` for one watching step (``None``: missing).
Matcher = Callable[[Any, Any], bool]

#: Write a value; a key written after it expired starts afresh, at the end of its group's order.
UPSERT = (
    "INSERT INTO state (grp, key, value, updated_at, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at, created_at = CASE WHEN state.expires_at <= excluded.updated_at "
    "THEN excluded.created_at ELSE state.created_at END"
)


class StateStore(OutboxRows, CronFires, abc.ABC):
    """Key-value state by group, shared by every process: JSON values, atomic updates, transactions.

    Build one with :func:`conveyor.store.open_store`. Every method is safe to call from many
    threads and processes at once; ``async def`` handlers get the same calls as coroutines
    (:class:`~conveyor.store.AsyncStateStore`).
    """

    #: ``"sqlite"`` or ``"postgresql"``.
    backend: ClassVar[str]
    #: The SQL of the two engines differs in how a claim skips rows others hold ...
    _skip_locked: ClassVar[str] = ""
    #: ... and in the column that orders a group's keys by when they were first written.
    _seq: ClassVar[str] = "seq"

    def __init__(self) -> None:
        #: group -> [(step name, fires)]: who to trigger when the group changes.
        self.watchers: dict[str, list[tuple[str, Matcher]]] = {}
        #: Called after a commit with the triggers and messages it recorded (the outbox publishes them).
        self.on_commit: Callable[[list[Pending]], None] | None = None

    # -- what a backend supplies -----------------------------------------------------------

    @abc.abstractmethod
    def _begin(self) -> Any:
        """A connection inside a new write transaction."""

    @abc.abstractmethod
    def _end(self, connection: Any, *, commit: bool) -> None:
        """Commit or roll back the transaction and give the connection back."""

    @abc.abstractmethod
    @contextmanager
    def _reader(self) -> Iterator[Any]:
        """A connection for reads outside any transaction."""

    def _lock(self, connection: Any, group: str, key: str) -> None:  # noqa: B027 - SQLite locks the whole file
        """Hold ``group``/``key`` until the transaction ends, whether or not a row exists."""

    def _sql(self, statement: str) -> str:
        """``statement`` in the backend's placeholder style (written with ``?``)."""
        return statement

    def _limit_waits(  # noqa: B027 - SQLite waits its busy_timeout, as always
        self, connection: Any, lock_timeout: float | None, idle_timeout: float | None
    ) -> None:
        """Bound, for this transaction only, how long it waits for a lock and how long it may sit idle."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close this process's connections."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the state lives, fit for a log line (no password)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the API handlers use ----------------------------------------------------------------

    @contextmanager
    def transaction(self, *, lock_timeout: float | None = None, idle_timeout: float | None = None) -> Iterator[None]:
        """Make every state call in the block one atomic, isolated change.

        Nothing another process writes can come between the block's reads and writes, and
        either all of its writes happen or none does. Use it to make an effect happen once::

            with ctx.state.transaction():
                if ctx.state.get("applied", order_id):
                    return  # a redelivery: the stock was already taken
                ctx.state.update("inventory", product_id, [{"type": "decrement", "path": "stock"}])
                ctx.state.set("applied", order_id, True)

        Keep the block short: writers of the same keys wait for it. Calls inside it join it;
        on PostgreSQL, two blocks that wait on each other's keys abort one of them with a
        deadlock error, which the message's retry runs again.

        Two limits, in seconds, on PostgreSQL only (SQLite waits its ``busy_timeout``): with
        ``lock_timeout``, a lock not had within it aborts the block with
        :class:`~conveyor.errors.StateConflictError` (run it again); with ``idle_timeout``,
        the server ends the block's session once it sits idle that long between two
        statements (its process froze), undoing the block and freeing what it holds, so the
        block's commit fails. A block that joins an open one keeps that one's limits.
        """
        joined = current_transaction.get()
        if joined is not None and joined.store is self:
            yield
            return
        tx = self.begin(lock_timeout=lock_timeout, idle_timeout=idle_timeout)
        token = current_transaction.set(tx)
        try:
            yield
        except BaseException:
            current_transaction.reset(token)
            self.finish(tx, commit=False)
            raise
        current_transaction.reset(token)
        self.finish(tx, commit=True)

    def get(self, group: str, key: str) -> Any | None:
        """The value at ``group``/``key``, or ``None`` (also once its time to live has passed)."""
        check_names(group, key)
        tx = self._joined()
        if tx is None:
            with self._reader() as db:
                return self._read(db, group, key)
        with tx.busy:
            self._lock(tx.connection, group, key)
            return self._read(tx.connection, group, key)

    def set(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> Any:
        """Store ``value`` at ``group``/``key``, replacing what was there; returns it.

        ``ttl`` (seconds or a ``timedelta``) makes the key read as missing once it passes.
        """
        check_names(group, key)
        text, expires_at = encode(group, key, value), expiry(ttl)
        with self._writing() as tx:
            self._lock(tx.connection, group, key)
            old = self._read(tx.connection, group, key) if group in self.watchers else None
            self._write(tx.connection, group, key, text, expires_at)
            self._changed(tx, group, key, old, value)
        return value

    def update(self, group: str, key: str, ops: Ops, *, ttl: TTL | None = None) -> Any:
        """Apply Motia's ops atomically and return the new value.

        ``ops`` is a list such as ``[{"type": "set", "path": "status", "value": "done"},
        {"type": "increment", "path": "count", "by": 1}]`` (also ``merge``, ``decrement``,
        ``remove``), or a plain dict, which is merged. A missing value starts as ``{}``.
        ``ttl`` sets a new time to live; without it the key keeps the one it had.
        """
        check_names(group, key)
        expires_at = expiry(ttl)
        with self._writing() as tx:
            self._lock(tx.connection, group, key)
            row = self._row(tx.connection, group, key)
            old = decode(row[0]) if row else None
            # A watched group compares old with new: the ops then work on a copy of their own.
            new = apply_ops(decode(row[0]) if row and group in self.watchers else old, ops, in_place=True)
            if expires_at is None and row:
                expires_at = row[1]
            self._write(tx.connection, group, key, encode(group, key, new), expires_at)
            self._changed(tx, group, key, old, new)
        return new

    def create(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> bool:
        """Store ``value`` at ``group``/``key`` only if it holds nothing; ``True`` if it was stored.

        One atomic step, for "do this once" marks: of many callers, exactly one gets ``True``::

            if not ctx.state.create("notifications", notification_id, record, ttl=timedelta(days=14)):
                return  # already sent
        """
        check_names(group, key)
        text, expires_at = encode(group, key, value), expiry(ttl)
        with self._writing() as tx:
            self._lock(tx.connection, group, key)
            if self._row(tx.connection, group, key) is not None:
                return False
            self._write(tx.connection, group, key, text, expires_at)
            self._changed(tx, group, key, None, value)
        return True

    def delete(self, group: str, key: str) -> Any | None:
        """Remove ``group``/``key``; returns the value it held, or ``None``."""
        check_names(group, key)
        with self._writing() as tx:
            self._lock(tx.connection, group, key)
            old = self._read(tx.connection, group, key)
            tx.connection.execute(self._sql("DELETE FROM state WHERE grp = ? AND key = ?"), (group, key))
            if old is not None:
                self._changed(tx, group, key, old, None)
        return old

    def list(self, group: str) -> builtins.list[Any]:
        """Every value in ``group``, oldest key first."""
        return [value for _, value in self.items(group)]

    def items(self, group: str) -> builtins.list[tuple[str, Any]]:
        """Every ``(key, value)`` in ``group``, oldest key first."""
        check_names(group)
        statement = self._sql(
            "SELECT key, value FROM state WHERE grp = ? AND (expires_at IS NULL OR expires_at > ?) "
            f"ORDER BY COALESCE(created_at, 0), {self._seq}"
        )
        tx = self._joined()
        if tx is None:
            with self._reader() as db:
                rows = db.execute(statement, (group, time.time())).fetchall()
        else:
            with tx.busy:
                rows = tx.connection.execute(statement, (group, time.time())).fetchall()
        return [(key, decode(value)) for key, value in rows]

    def groups(self) -> builtins.list[tuple[str, int]]:
        """Every group that holds a value, with how many keys it holds, by name."""
        statement = (
            "SELECT grp, COUNT(*) FROM state WHERE expires_at IS NULL OR expires_at > ? GROUP BY grp ORDER BY grp"
        )
        with self._reader() as db:
            return [(group, count) for group, count in db.execute(self._sql(statement), (time.time(),)).fetchall()]

    def clear(self, group: str) -> int:
        """Remove every value in ``group``; returns how many there were."""
        check_names(group)
        with self._writing() as tx:
            db = tx.connection
            rows = db.execute(self._sql("SELECT key FROM state WHERE grp = ? ORDER BY key"), (group,)).fetchall()
            keys = [key for (key,) in rows]
            removed = 0
            for key in keys:
                self._lock(db, group, key)
                old = self._read(db, group, key)
                db.execute(self._sql("DELETE FROM state WHERE grp = ? AND key = ?"), (group, key))
                if old is not None:
                    removed += 1
                    self._changed(tx, group, key, old, None)
        return removed

    def ping(self) -> None:
        """Raise if the store cannot be read (used by the gateway's health check)."""
        with self._reader() as db:
            db.execute("SELECT 1 FROM state LIMIT 1").fetchall()

    # -- upkeep: expiry (the outbox: :mod:`.outbox_rows`) -------------------------------------

    def remove_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` keys whose time to live has passed; returns how many.

        Expired keys already read as missing; this gives their space back. Removing one
        fires no state trigger.
        """
        statement = self._sql(
            f"DELETE FROM state WHERE {self._seq} IN (SELECT {self._seq} FROM state WHERE expires_at <= ? LIMIT ?)"
        )
        with self._writing() as tx:
            cursor = tx.connection.execute(statement, (time.time(), limit))
            return int(max(cursor.rowcount, 0))

    # -- transactions, for this module and the async facade ------------------------------------

    def begin(self, *, lock_timeout: float | None = None, idle_timeout: float | None = None) -> Transaction:
        """Open a transaction (:meth:`transaction` and ``async with`` use this)."""
        tx = Transaction(self, self._begin())
        if lock_timeout is not None or idle_timeout is not None:
            try:
                self._limit_waits(tx.connection, lock_timeout, idle_timeout)
            except BaseException:
                self._end(tx.connection, commit=False)
                raise
        return tx

    def finish(self, tx: Transaction, *, commit: bool) -> None:
        """Commit (or roll back) ``tx``, then hand what it recorded for the outbox to ``on_commit``."""
        self._end(tx.connection, commit=commit)
        if commit and tx.pending:
            faults.exit_after_commit()
            if self.on_commit is not None:
                self.on_commit(tx.pending)

    def _joined(self) -> Transaction | None:
        tx = current_transaction.get()
        return tx if tx is not None and tx.store is self else None

    @contextmanager
    def _writing(self) -> Iterator[Transaction]:
        tx = self._joined()
        if tx is not None:
            with tx.busy:
                yield tx
            return
        tx = self.begin()
        try:
            yield tx
        except BaseException:
            self._end(tx.connection, commit=False)
            raise
        self.finish(tx, commit=True)

    # -- rows ------------------------------------------------------------------------------------

    def _row(self, db: Any, group: str, key: str) -> tuple[str, float | None] | None:
        row = db.execute(
            self._sql("SELECT value, expires_at FROM state WHERE grp = ? AND key = ?"), (group, key)
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= time.time()):
            return None
        return row[0], row[1]

    def _read(self, db: Any, group: str, key: str) -> Any | None:
        row = self._row(db, group, key)
        return decode(row[0]) if row else None

    def _write(self, db: Any, group: str, key: str, text: str, expires_at: float | None) -> None:
        now = time.time()
        db.execute(self._sql(UPSERT), (group, key, text, now, expires_at, now))

    def _changed(self, tx: Transaction, group: str, key: str, old: Any, new: Any) -> None:
        watchers = self.watchers.get(group)
        if not watchers or old == new:
            return
        event = "created" if old is None else "deleted" if new is None else "updated"
        change = {"group": group, "key": key, "event": event, "old_value": old, "value": new}
        payload, trace_id, now = encode(group, key, change), current_trace_id.get(), time.time()
        for step, fires in watchers:
            if fires(old, new):
                # Claimed by this process at once: it publishes right after the commit.
                (trigger_id,) = tx.connection.execute(
                    self._sql(
                        "INSERT INTO outbox (step, payload, trace_id, created_at, claimed_at) "
                        "VALUES (?, ?, ?, ?, ?) RETURNING id"
                    ),
                    (step, payload, trace_id, now, now),
                ).fetchone()
                tx.pending.append(PendingTrigger(trigger_id, step, change, trace_id))
