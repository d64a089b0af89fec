"""The state store: JSON values by (group, key) in SQLite (WAL), shared by every process.

Each update runs in an immediate (write-locked) transaction, so read-modify-write
operations such as ``increment`` never lose an update, whichever process makes them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .state_ops import Ops, apply_ops

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    grp   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (grp, key)
);
"""


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
        with self._transaction() as db:
            db.execute(_SCHEMA)

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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def get(self, group: str, key: str) -> Any | None:
        """The value at ``group``/``key``, or ``None``."""
        row = self._connection().execute("SELECT value FROM state WHERE grp = ? AND key = ?", (group, key)).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, group: str, key: str, value: Any) -> Any:
        """Store ``value`` at ``group``/``key``, replacing what was there; returns it."""
        with self._transaction() as db:
            self._write(db, group, key, value)
        return value

    def update(self, group: str, key: str, ops: Ops) -> Any:
        """Apply Motia's ops atomically and return the new value.

        ``ops`` is a list such as ``[{"type": "set", "path": "status", "value": "done"},
        {"type": "increment", "path": "count", "by": 1}]`` (also ``merge``, ``decrement``,
        ``remove``), or a plain dict, which is merged. A missing value starts as ``{}``.
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM state WHERE grp = ? AND key = ?", (group, key)).fetchone()
            new = apply_ops(json.loads(row[0]) if row else None, ops)
            self._write(db, group, key, new)
        return new

    def delete(self, group: str, key: str) -> Any | None:
        """Remove ``group``/``key``; returns the value it held, or ``None``."""
        with self._transaction() as db:
            row = db.execute("DELETE FROM state WHERE grp = ? AND key = ? RETURNING value", (group, key)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, group: str) -> list[Any]:
        """Every value in ``group``, oldest key first."""
        rows = self._connection().execute("SELECT value FROM state WHERE grp = ? ORDER BY rowid", (group,))
        return [json.loads(value) for (value,) in rows]

    def items(self, group: str) -> list[tuple[str, Any]]:
        """Every ``(key, value)`` in ``group``, oldest key first."""
        rows = self._connection().execute("SELECT key, value FROM state WHERE grp = ? ORDER BY rowid", (group,))
        return [(key, json.loads(value)) for key, value in rows]

    def clear(self, group: str) -> int:
        """Remove every value in ``group``; returns how many there were."""
        with self._transaction() as db:
            return db.execute("DELETE FROM state WHERE grp = ?", (group,)).rowcount

    def ping(self) -> None:
        """Raise if the store cannot be read (used by the gateway's health check)."""
        self._connection().execute("SELECT 1 FROM state LIMIT 1").fetchall()

    @staticmethod
    def _write(db: sqlite3.Connection, group: str, key: str, value: Any) -> None:
        db.execute(
            "INSERT INTO state (grp, key, value, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (group, key, json.dumps(value, separators=(",", ":")), time.time()),
        )
