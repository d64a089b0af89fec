"""The SQLite state store: JSON values by (group, key) in one file (WAL), shared by every process.

Each update runs in an immediate (write-locked) transaction, so read-modify-write
operations such as ``increment`` never lose an update, whichever process makes them.

A write to a group that state-triggered steps watch also records, in the same transaction,
one pending trigger per matching step (the outbox, :mod:`conveyor.store.outbox`). After the
commit the outbox publishes them; a crash in between leaves them for its sweep to publish.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tracing import current_trace_id
from .ops import Ops, apply_ops

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS state (
        grp   TEXT NOT NULL,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (grp, key)
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        step TEXT NOT NULL,
        payload TEXT NOT NULL,
        trace_id TEXT,
        created_at REAL NOT NULL
    )""",
)

#: ``matches(change_value) -> bool`` for one watching step.
Matcher = Callable[[Any], bool]


@dataclass(frozen=True)
class PendingTrigger:
    """A state trigger recorded with its write and not yet published."""

    id: int
    step: str
    change: dict[str, Any]
    trace_id: str | None


class StateStore:
    """Key-value state by group, stored in one SQLite file.

    Values are anything JSON can hold. Every method is safe to call from many threads and
    processes at once.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        #: group -> [(step name, matcher)]: who to trigger when the group changes.
        self.watchers: dict[str, list[tuple[str, Matcher]]] = {}
        #: Called after a commit with the triggers it recorded (the outbox publishes them).
        self.on_commit: Callable[[list[PendingTrigger]], None] | None = None
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread, and a new one after fork: SQLite connections must not cross either.
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every state call in the block one atomic, isolated change.

        Nothing another process writes can come between the block's reads and writes, and
        either all of its writes happen or none does. Use it to make an effect happen once::

            with ctx.state.transaction():
                if ctx.state.get("applied", order_id):
                    return  # a redelivery: the stock was already taken
                ctx.state.update("inventory", product_id, [{"type": "decrement", "path": "stock"}])
                ctx.state.set("applied", order_id, True)

        Keep the block short: other writers wait for it. Calls inside it join it.
        """
        with self._transaction():
            yield

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        depth = getattr(self._local, "depth", 0)
        if depth:  # inside transaction(): join it
            yield db
            return
        self._local.pending = []
        self._local.depth = 1
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            self._local.depth = 0
        pending, self._local.pending = self._local.pending, []
        if pending and self.on_commit is not None:
            self.on_commit(pending)

    def get(self, group: str, key: str) -> Any | None:
        """The value at ``group``/``key``, or ``None``."""
        return self._read(self._connection(), group, key)

    def set(self, group: str, key: str, value: Any) -> Any:
        """Store ``value`` at ``group``/``key``, replacing what was there; returns it."""
        with self._transaction() as db:
            old = self._read(db, group, key) if group in self.watchers else None
            self._write(db, group, key, value)
            self._changed(db, group, key, old, value)
        return value

    def update(self, group: str, key: str, ops: Ops) -> Any:
        """Apply Motia's ops atomically and return the new value.

        ``ops`` is a list such as ``[{"type": "set", "path": "status", "value": "done"},
        {"type": "increment", "path": "count", "by": 1}]`` (also ``merge``, ``decrement``,
        ``remove``), or a plain dict, which is merged. A missing value starts as ``{}``.
        """
        with self._transaction() as db:
            old = self._read(db, group, key)
            new = apply_ops(old, ops)
            self._write(db, group, key, new)
            self._changed(db, group, key, old, new)
        return new

    def delete(self, group: str, key: str) -> Any | None:
        """Remove ``group``/``key``; returns the value it held, or ``None``."""
        with self._transaction() as db:
            rows = db.execute("DELETE FROM state WHERE grp = ? AND key = ? RETURNING value", (group, key)).fetchall()
            old = json.loads(rows[0][0]) if rows else None
            if rows:
                self._changed(db, group, key, old, None)
        return old

    def list(self, group: str) -> builtins.list[Any]:
        """Every value in ``group``, oldest key first."""
        rows = self._connection().execute("SELECT value FROM state WHERE grp = ? ORDER BY rowid", (group,))
        return [json.loads(value) for (value,) in rows]

    def items(self, group: str) -> builtins.list[tuple[str, Any]]:
        """Every ``(key, value)`` in ``group``, oldest key first."""
        rows = self._connection().execute("SELECT key, value FROM state WHERE grp = ? ORDER BY rowid", (group,))
        return [(key, json.loads(value)) for key, value in rows]

    def clear(self, group: str) -> int:
        """Remove every value in ``group``; returns how many there were."""
        with self._transaction() as db:
            rows = db.execute("DELETE FROM state WHERE grp = ? RETURNING key, value", (group,)).fetchall()
            for key, value in rows:
                self._changed(db, group, key, json.loads(value), None)
        return len(rows)

    def ping(self) -> None:
        """Raise if the store cannot be read (used by the gateway's health check)."""
        self._connection().execute("SELECT 1 FROM state LIMIT 1").fetchall()

    def pending_triggers(self, older_than: float = 0.0, limit: int = 500) -> builtins.list[PendingTrigger]:
        """Triggers recorded more than ``older_than`` seconds ago and not yet published."""
        rows = self._connection().execute(
            "SELECT id, step, payload, trace_id FROM outbox WHERE created_at <= ? ORDER BY id LIMIT ?",
            (time.time() - older_than, limit),
        )
        return [PendingTrigger(id, step, json.loads(payload), trace) for id, step, payload, trace in rows]

    def triggers_published(self, ids: builtins.list[int]) -> None:
        """Forget triggers RabbitMQ has confirmed."""
        if ids:
            with self._transaction() as db:
                db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def _changed(self, db: sqlite3.Connection, group: str, key: str, old: Any, new: Any) -> None:
        watchers = self.watchers.get(group)
        if not watchers or old == new:
            return
        event = "created" if old is None else "deleted" if new is None else "updated"
        change = {"group": group, "key": key, "event": event, "old_value": old, "value": new}
        subject = old if new is None else new
        payload = json.dumps(change, separators=(",", ":"))
        trace_id = current_trace_id.get()
        for step, matches in watchers:
            if matches(subject):
                cursor = db.execute(
                    "INSERT INTO outbox (step, payload, trace_id, created_at) VALUES (?, ?, ?, ?)",
                    (step, payload, trace_id, time.time()),
                )
                self._local.pending.append(PendingTrigger(cursor.lastrowid or 0, step, change, trace_id))

    @staticmethod
    def _read(db: sqlite3.Connection, group: str, key: str) -> Any | None:
        row = db.execute("SELECT value FROM state WHERE grp = ? AND key = ?", (group, key)).fetchone()
        return json.loads(row[0]) if row else None

    @staticmethod
    def _write(db: sqlite3.Connection, group: str, key: str, value: Any) -> None:
        db.execute(
            "INSERT INTO state (grp, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (group, key, json.dumps(value, separators=(",", ":")), time.time()),
        )
