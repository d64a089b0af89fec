"""The glue's state: JSON values by (group, key) in one SQLite table, as a user writes it in a few lines.

One connection per thread (SQLite connections must not cross threads), WAL so that readers do
not wait for the writer, autocommit: each :meth:`KeyValueStore.get` and :meth:`~KeyValueStore.set`
is a statement of its own. Nothing makes a read and the write that follows it one transaction,
which is how the seed's UpdateInventory loses decrements.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

#: The SQLite file the glue's gateway and workers share.
STATE_PATH_ENV = "CONVEYOR_BENCH_GLUE_STATE"
#: Not Conveyor's ``state`` table: the two never mix, even in one file.
TABLE = "glue_state"


class KeyValueStore:
    """``get``/``set`` of JSON values by group and key in the SQLite file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connection().execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (grp TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (grp, key))"
        )

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # The same settings as Conveyor's store: wait up to 30 s for the write lock, WAL, synchronous=NORMAL.
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, group: str, key: str) -> Any | None:
        query = f"SELECT value FROM {TABLE} WHERE grp = ? AND key = ?"
        row = self._connection().execute(query, (group, key)).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, group: str, key: str, value: Any) -> None:
        self._connection().execute(
            f"INSERT OR REPLACE INTO {TABLE} (grp, key, value) VALUES (?, ?, ?)", (group, key, json.dumps(value))
        )

    def count(self, group: str) -> int:
        """How many values ``group`` holds (the benchmark polls it)."""
        return int(self._connection().execute(f"SELECT count(*) FROM {TABLE} WHERE grp = ?", (group,)).fetchone()[0])


def from_environment() -> KeyValueStore:
    """The store named by ``CONVEYOR_BENCH_GLUE_STATE``."""
    path = os.environ.get(STATE_PATH_ENV)
    if not path:
        raise RuntimeError(f"{STATE_PATH_ENV} must name the glue's SQLite file")
    return KeyValueStore(path)
