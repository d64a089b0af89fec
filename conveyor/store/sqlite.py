"""The SQLite backend: the state in one file (WAL), shared by the processes of one host.

A ``set``, ``create``, ``update`` or ``delete`` outside any transaction, in a group no state trigger
watches, is one statement: the file is locked for that statement alone. (``update`` runs the
ops inside the statement, through a function registered on the connection.)

SQLite lets one writer at a time into the file. Left to itself, every thread that finds the
file locked sleeps in SQLite's busy handler, whose sleeps grow to 100 ms, so writers pile up
while the lock sits free. Here the threads of a process queue on a lock of their own (a
woken thread starts at once), and only the one at the head asks SQLite for the file lock,
retrying within a few milliseconds while another process holds it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

from ..errors import StateUnavailableError
from .base import UPSERT, StateStore
from .ops import Ops, apply_ops
from .transactions import WouldWait
from .values import TTL, check_names, decode, encode, expiry

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS state (
        grp   TEXT NOT NULL,
        key   TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        expires_at REAL,
        created_at REAL,
        PRIMARY KEY (grp, key)
    )""",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        step TEXT NOT NULL,
        payload TEXT NOT NULL,
        trace_id TEXT,
        created_at REAL NOT NULL,
        claimed_at REAL NOT NULL DEFAULT 0,
        message TEXT,
        delay_ms INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS cron_fires (
        step TEXT NOT NULL,
        tick TEXT NOT NULL,
        fired_by TEXT NOT NULL,
        fired_at REAL NOT NULL,
        PRIMARY KEY (step, tick)
    )""",
)
#: Columns added since the first release, for files an older Conveyor made.
_ADDED_COLUMNS = (
    ("state", "expires_at", "REAL"),
    ("state", "created_at", "REAL"),
    ("outbox", "claimed_at", "REAL NOT NULL DEFAULT 0"),
    ("outbox", "message", "TEXT"),
    ("outbox", "delay_ms", "INTEGER"),
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS state_expiry ON state (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS cron_fires_age ON cron_fires (fired_at)",
)

#: The longest pause between two tries for the file lock another process holds.
_MAX_PAUSE = 0.004

#: Set while a call must not wait (see :meth:`SqliteStateStore.at_once`).
_at_once: ContextVar[bool] = ContextVar("conveyor_sqlite_at_once", default=False)

#: Connections a child process inherited from its parent through fork: kept, never closed,
#: because closing them in the child could disturb the parent's use of the file.
_inherited: list[object] = []


#: Update a live key in one statement; ``conveyor_apply`` runs the ops on the stored value.
_UPDATE_ALONE = (
    "UPDATE state SET value = conveyor_apply(value), updated_at = ?, expires_at = COALESCE(?, expires_at) "
    "WHERE grp = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?) RETURNING value"
)
#: Insert a key that holds nothing (or whose value expired); a row comes back only if it was written.
_CREATE_ALONE = (
    "INSERT INTO state (grp, key, value, updated_at, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (grp, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
    "expires_at = excluded.expires_at, created_at = excluded.created_at "
    "WHERE state.expires_at <= excluded.updated_at RETURNING 1"
)
_DELETE_ALONE = "DELETE FROM state WHERE grp = ? AND key = ? RETURNING value, expires_at"


class _ProcessConnections:
    """The connections of one process (a forked child makes its own)."""

    def __init__(self, store: SqliteStateStore) -> None:
        self.pid = os.getpid()
        self.writer = threading.Lock()
        # The one connection that writes, used under `writer` only: it never waits inside SQLite.
        self.write_connection = store._connect(timeout=0)
        self.write_connection.create_function("conveyor_apply", 1, self._apply, deterministic=True)
        # Writes made at once, on an event loop, go through a connection that never checkpoints:
        # a checkpoint syncs the file to disk, which is a wait. The ordinary writers checkpoint.
        self.loop_connection = store._connect(timeout=0)
        self.loop_connection.create_function("conveyor_apply", 1, self._apply, deterministic=True)
        self.loop_connection.execute("PRAGMA wal_autocheckpoint=0")
        self.readers = threading.local()
        #: What the running one-statement update applies: (group, key, ops), and what it raised.
        self.applying: tuple[str, str, Ops] | None = None
        self.failure: BaseException | None = None

    def _apply(self, text: str) -> str:
        assert self.applying is not None
        group, key, ops = self.applying
        try:
            return encode(group, key, apply_ops(decode(text), ops, in_place=True))
        except Exception as exc:  # SQLite would report only "user-defined function raised exception"
            self.failure = exc
            raise


class SqliteStateStore(StateStore):
    """The state in the SQLite file at ``path`` (made, with its directory, if missing).

    Parameters:
      path: the database file; every process of the deployment opens the same one.
      busy_timeout: how long a write waits for the file before
        :class:`~conveyor.errors.StateUnavailableError` (seconds).
    """

    backend: ClassVar[str] = "sqlite"
    _seq: ClassVar[str] = "rowid"

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = busy_timeout
        self._guard = threading.Lock()
        self._connections: _ProcessConnections | None = None
        self._prepare()

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def close(self) -> None:
        connections, self._connections = self._connections, None
        if connections is not None and connections.pid == os.getpid():
            connections.write_connection.close()
            connections.loop_connection.close()

    # -- calls that must not wait ------------------------------------------------------------

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Inside, a call that would wait (for another thread's write, for another process's
        lock) raises :class:`~conveyor.store.base.WouldWait` instead, having changed nothing.

        The async API tries each call this way on the event loop first: most take tens of
        microseconds, less than handing them to a thread and back.
        """
        token = _at_once.set(True)
        try:
            yield
        finally:
            _at_once.reset(token)

    def checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database file (what writes made at once skip)."""
        connections = self._process()
        with connections.writer:
            self._lock_file(connections.write_connection, "PRAGMA wal_checkpoint(PASSIVE)")

    def _take_writer(self, connections: _ProcessConnections) -> sqlite3.Connection:
        """Hold this process's writer lock; the connection to write through."""
        if _at_once.get():
            if not connections.writer.acquire(blocking=False):
                raise WouldWait("another thread of this process is writing")
            return connections.loop_connection
        if not connections.writer.acquire(timeout=self.busy_timeout):
            raise StateUnavailableError(
                f"{self.describe()}: waited {self.busy_timeout:.0f}s for another thread's write to finish"
            )
        return connections.write_connection

    # -- one-statement writes ------------------------------------------------------------------

    def set(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> Any:
        if self._joined() is not None or group in self.watchers:
            return super().set(group, key, value, ttl=ttl)
        check_names(group, key)
        text, expires_at, now = encode(group, key, value), expiry(ttl), time.time()
        self._alone(UPSERT, (group, key, text, now, expires_at, now))
        return value

    def update(self, group: str, key: str, ops: Ops, *, ttl: TTL | None = None) -> Any:
        if self._joined() is not None or group in self.watchers:
            return super().update(group, key, ops, ttl=ttl)
        check_names(group, key)
        now = time.time()
        rows = self._alone(_UPDATE_ALONE, (now, expiry(ttl), group, key, now), applying=(group, key, ops))
        if not rows:  # a missing (or expired) key: the ops start from {} in a transaction of their own
            return super().update(group, key, ops, ttl=ttl)
        return decode(rows[0][0])

    def create(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> bool:
        if self._joined() is not None or group in self.watchers:
            return super().create(group, key, value, ttl=ttl)
        check_names(group, key)
        text, expires_at, now = encode(group, key, value), expiry(ttl), time.time()
        return bool(self._alone(_CREATE_ALONE, (group, key, text, now, expires_at, now)))

    def delete(self, group: str, key: str) -> Any | None:
        if self._joined() is not None or group in self.watchers:
            return super().delete(group, key)
        check_names(group, key)
        rows = self._alone(_DELETE_ALONE, (group, key))
        if not rows or (rows[0][1] is not None and rows[0][1] <= time.time()):
            return None
        return decode(rows[0][0])

    def _alone(
        self, statement: str, params: tuple[Any, ...], *, applying: tuple[str, str, Ops] | None = None
    ) -> list[Any]:
        """Run one write statement in a transaction of its own; its rows (from RETURNING)."""
        connections = self._process()
        db = self._take_writer(connections)
        try:
            connections.applying, connections.failure = applying, None
            deadline, pause = time.monotonic() + self.busy_timeout, 0.0002
            while True:
                try:
                    return db.execute(statement, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if connections.failure is not None:
                        raise connections.failure from None
                    self._wait_for_file(exc, deadline, pause)
                    pause = min(pause * 2, _MAX_PAUSE)
        finally:
            connections.applying = connections.failure = None
            connections.writer.release()

    def _wait_for_file(self, exc: sqlite3.OperationalError, deadline: float, pause: float) -> None:
        """Re-raise ``exc`` unless it is another process holding the file; else pause before the next try."""
        if not _locked(exc):
            raise exc
        if _at_once.get():
            raise WouldWait("another process holds the file's write lock") from exc
        if time.monotonic() > deadline:
            raise StateUnavailableError(
                f"{self.describe()}: another process held its write lock for over {self.busy_timeout:.0f}s"
            ) from exc
        time.sleep(pause * (0.5 + random.random()))

    # -- connections -------------------------------------------------------------------------

    def _connect(self, *, timeout: float) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        # With WAL: durable at each checkpoint, never corrupt. (Retried: a first start may find the file locked.)
        self._lock_file(db, "PRAGMA synchronous=NORMAL")
        return db

    def _process(self) -> _ProcessConnections:
        connections = self._connections
        if connections is None or connections.pid != os.getpid():
            with self._guard:
                connections = self._connections
                if connections is None or connections.pid != os.getpid():
                    if connections is not None:
                        _inherited.append(connections)
                    connections = self._connections = _ProcessConnections(self)
        return connections

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._read_connection()
        except sqlite3.OperationalError as exc:
            if _at_once.get() and _locked(exc):
                raise WouldWait("the file is being recovered") from exc
            raise

    def _read_connection(self) -> sqlite3.Connection:
        readers = self._process().readers
        name = "at_once" if _at_once.get() else "db"
        db: sqlite3.Connection | None = getattr(readers, name, None)
        if db is None:
            # Readers never wait for writers under WAL; the timeout covers SQLite's rare recovery locks
            # (none for reads made at once: those raise WouldWait, see get()).
            db = self._connect(timeout=0 if name == "at_once" else self.busy_timeout)
            setattr(readers, name, db)
        return db

    def _begin(self) -> sqlite3.Connection:
        connections = self._process()
        db = self._take_writer(connections)
        try:
            self._lock_file(db)
        except BaseException:
            connections.writer.release()
            raise
        return db

    def _end(self, connection: sqlite3.Connection, *, commit: bool) -> None:
        try:
            if commit:
                try:
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            else:
                connection.execute("ROLLBACK")
        finally:
            self._process().writer.release()

    def _lock_file(self, db: sqlite3.Connection, statement: str = "BEGIN IMMEDIATE") -> None:
        """Run ``statement`` (which takes the file's write lock), trying again while another process holds it."""
        deadline, pause = time.monotonic() + self.busy_timeout, 0.0002
        while True:
            try:
                db.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                self._wait_for_file(exc, deadline, pause)
            pause = min(pause * 2, _MAX_PAUSE)

    def _prepare(self) -> None:
        """Switch the file to WAL and make the tables, however many processes start at once."""
        db = self._connect(timeout=0)
        try:
            # Several processes may start on a new file at once: one switches it to WAL, the others retry.
            self._lock_file(db, "PRAGMA journal_mode=WAL")
            self._lock_file(db)
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                for table, column, kind in _ADDED_COLUMNS:
                    if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                for statement in _INDEXES:
                    db.execute(statement)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


def _locked(exc: sqlite3.OperationalError) -> bool:
    """Did SQLite refuse because another connection holds the file (rather than for another reason)?"""
    return "locked" in str(exc) or "busy" in str(exc)
