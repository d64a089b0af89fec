"""Traces in a SQLite file of their own (``var/traces.db``), never the state's file: tracing then
never waits on the state's write lock, nor the state on tracing's.

WAL lets the console's threads read while the recorder's thread writes. Each thread gets its own
connection, made on its first call (so a process forked after the store was made opens its own),
and nothing touches the file before that first call.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .schema import SCHEMA_VERSION, schema
from .sql import Runner, SqlTraceStore

#: How long a writer waits for another process's write lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 10_000


#: Rows one INSERT carries. The sqlite3 module lets go of the GIL around every statement it
#: runs and takes it back after: one statement per row (``executemany``) makes the recorder's
#: thread and the threads serving requests hand the GIL to each other twice a row, which cost
#: more CPU than the writes themselves.
ROWS_PER_STATEMENT = 100


class _Connection:
    """A :class:`~conveyor.tracing.sql.Runner` over one sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(statement, params).fetchall()

    def run(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(statement, params)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        """``statement`` for each row; an ``INSERT ... VALUES (?, ...)`` takes many rows at once."""
        parts = _values_clause(statement)
        if parts is None:
            return self.connection.executemany(statement, rows).rowcount
        head, group, tail = parts
        changed = 0
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            many = f"{head}{', '.join([group] * len(chunk))}{tail}"
            changed += self.connection.execute(many, [value for row in chunk for value in row]).rowcount
        return changed


@functools.lru_cache(maxsize=64)
def _values_clause(statement: str) -> tuple[str, str, str] | None:
    """``(before, "(?, ...)", after)`` of an ``INSERT ... VALUES (?, ...) ...``, else ``None``."""
    at = statement.find(" VALUES (")
    if not statement.startswith("INSERT") or at < 0:
        return None
    start = at + len(" VALUES ")
    end = statement.index(")", start) + 1
    return statement[:start], statement[start:end], statement[end:]


class SqliteTraceStore(SqlTraceStore):
    """The trace store in the SQLite file at ``path`` (its directory is made on first use).

    Example::

        store = SqliteTraceStore("var/traces.db")
        store.write(spans, logs)
        page = store.traces(TraceQuery(status="failed"))
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._guard = threading.Lock()
        self._opened: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._schema_ready = False

    def describe(self) -> str:
        return f"the trace file {self.path}"

    def close(self) -> None:
        """Close every connection this process opened (any thread's)."""
        with self._guard:
            opened, self._opened = self._opened, []
            mine = self._pid == os.getpid()
        if mine:
            for connection in opened:
                connection.close()
        self._local = threading.local()

    def _here(self) -> _Connection:
        local = self._local
        connection: _Connection | None = getattr(local, "connection", None)
        if connection is not None and local.pid == os.getpid():
            return connection
        with self._guard:
            if self._pid != os.getpid():
                # A forked child: the parent's connections are the parent's; never close them here.
                self._pid, self._opened, self._schema_ready = os.getpid(), [], False
            connection = _Connection(self._connect())
            self._opened.append(connection.connection)
        local.connection, local.pid = connection, os.getpid()
        return connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: transactions are opened by hand (BEGIN IMMEDIATE), so reads hold no snapshot open.
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        # 16 MiB of pages: the indexes of a store of a few hundred thousand spans stay in memory.
        connection.execute("PRAGMA cache_size = -16384")
        if not self._schema_ready:
            self._make_schema(connection)
        return connection

    def _make_schema(self, connection: sqlite3.Connection) -> None:
        if connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in schema("id INTEGER PRIMARY KEY"):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        self._schema_ready = True

    @contextmanager
    def _reading(self) -> Iterator[Runner]:
        yield self._here()

    @contextmanager
    def _writing(self) -> Iterator[Runner]:
        # IMMEDIATE: take the write lock first, so the summary is computed from spans no other writer is changing.
        runner = self._here()
        runner.connection.execute("BEGIN IMMEDIATE")
        try:
            yield runner
        except BaseException:
            runner.connection.execute("ROLLBACK")
            raise
        runner.connection.execute("COMMIT")
