"""The PostgreSQL backend: the state on a server that processes on any number of hosts share.

Isolation comes from locks, not from retries: every call that reads for a write, and every
read inside a transaction, first takes a transaction-level advisory lock on its key. Row
locks alone would not do: a key that has no row yet has nothing to lock, so two "first"
increments of it would both read nothing. The advisory lock exists whether or not the row
does. Values are stored as JSON text, so a string holding a NUL (which ``jsonb`` rejects)
is kept as on SQLite.

Each process makes its own pool on first use (after any fork), sized to its threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StateConflictError, StateUnavailableError
from ..process_pool import ProcessPool
from .base import StateStore

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS state (
        grp   text NOT NULL,
        key   text NOT NULL,
        value text NOT NULL,
        updated_at double precision NOT NULL,
        expires_at double precision,
        created_at double precision,
        seq   bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (grp, key)
    )""",
    "CREATE INDEX IF NOT EXISTS state_group_order ON state (grp, created_at, seq)",
    "CREATE INDEX IF NOT EXISTS state_expiry ON state (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        step text NOT NULL,
        payload text NOT NULL,
        trace_id text,
        created_at double precision NOT NULL,
        claimed_at double precision NOT NULL DEFAULT 0
    )""",
    # Added since the first release: a database an older Conveyor made gets them here.
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS message text",
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS delay_ms bigint",
    "CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (claimed_at)",
    """CREATE TABLE IF NOT EXISTS cron_fires (
        step text NOT NULL,
        tick text NOT NULL,
        fired_by text NOT NULL,
        fired_at double precision NOT NULL,
        PRIMARY KEY (step, tick)
    )""",
    "CREATE INDEX IF NOT EXISTS cron_fires_age ON cron_fires (fired_at)",
    "CREATE TABLE IF NOT EXISTS conveyor_schema (version integer NOT NULL)",
)
#: Serialises the schema's creation: concurrent CREATE ... IF NOT EXISTS can still collide.
_SCHEMA_LOCK = 0x636F6E76  # "conv"
#: The version :data:`_SCHEMA` makes; bump it with every statement added there.
SCHEMA_VERSION = 2

#: How long a call waits for a connection while the server is known to be down (seconds).
DOWN_TIMEOUT = 1.0

#: A transaction left open this long by a frozen process is ended by the server, freeing its locks.
IDLE_IN_TRANSACTION_TIMEOUT = "60s"


def _unavailable(exc: BaseException) -> bool:
    """Is ``exc`` the server being unreachable (rather than, say, a deadlock or a bad statement)?"""
    if isinstance(exc, PoolTimeout):
        return True
    # No SQLSTATE: libpq lost the connection. 08: connection, 53: resources (too many connections), 57: shutdown.
    return isinstance(exc, psycopg.OperationalError) and (exc.sqlstate is None or exc.sqlstate[:2] in _DOWN)


_DOWN = frozenset({"08", "53", "57"})


def _translated(store: PostgresStateStore, exc: Exception) -> Exception | None:
    """The Conveyor error ``exc`` means, if any."""
    if _unavailable(exc):
        return StateUnavailableError(f"{store.describe()}: {' '.join(str(exc).split())}")
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return StateConflictError(
            f"{store.describe()}: this transaction waited longer than its lock_timeout for a lock another "
            "holds, so it was undone and changed nothing; run it again."
        )
    if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
        return StateConflictError(
            f"{store.describe()}: this transaction sat idle longer than its idle_timeout (its process was "
            "paused), so the server undid it; nothing of it was stored. Run it again."
        )
    if isinstance(exc, psycopg.errors.DeadlockDetected):
        return StateConflictError(
            f"{store.describe()}: this transaction and another waited on each other's keys, so this one "
            "was undone and changed nothing; run it again (a worker's retry does). Taking keys in the same "
            "order in every transaction avoids it."
        )
    return None


class _Session:
    """A pooled connection: statements take ``?`` placeholders; a lost server reads as StateUnavailableError.

    Outside a transaction (``reads_only``), a statement that finds its connection dead (the
    server restarted since it was pooled) runs again once on a fresh one.
    """

    def __init__(self, store: PostgresStateStore, connection: psycopg.Connection[Any], *, reads_only: bool) -> None:
        self.store = store
        self.connection = connection
        self.reads_only = reads_only

    def execute(self, statement: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        sql = self.store._sql(statement)
        # Each idle connection of the pool may be dead: a read tries fresh ones until one answers.
        for _ in range(self.store.pool_size + 1 if self.reads_only else 1):
            try:
                return self.connection.execute(sql, params)
            except Exception as exc:
                failure = exc
                if not (self.reads_only and self.connection.broken and _unavailable(exc)):
                    break
                self.store._pool_here().putconn(self.connection)
                self.connection = self.store._connection()
        translated = _translated(self.store, failure)
        if translated is None:
            raise failure
        raise translated from failure


class PostgresStateStore(StateStore):
    """The state in the PostgreSQL database at ``url`` (``postgresql://user:password@host:port/db``).

    Parameters:
      url: the database; its tables are made on first use.
      pool_size: connections this process may hold at once (its threads that use state, plus a few).
      timeout: how long a call waits for a connection before
        :class:`~conveyor.errors.StateUnavailableError` (seconds).
    """

    backend: ClassVar[str] = "postgresql"
    _skip_locked: ClassVar[str] = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pools = ProcessPool(self._new_pool)
        self._statements: dict[str, str] = {}
        self._schema_ready = False
        #: Set when a connection could not be had, until one can: calls then wait DOWN_TIMEOUT at most.
        self._down = False

    def describe(self) -> str:
        parts = conninfo_to_dict(self.url)
        where = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"
        user = f"{parts['user']}@" if parts.get("user") else ""
        return f"PostgreSQL at postgresql://{user}{where}"

    def resize(self, pool_size: int) -> None:
        """Set how many connections this process may hold (before its first call)."""
        self.pool_size = pool_size
        if (pool := self._pools.current()) is not None:
            pool.resize(1, pool_size)

    def check(self) -> None:
        """Connect once (not through the pool) and make the tables; raise :class:`StateUnavailableError` if not."""
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as connection:
                self._make_schema(connection)
        except psycopg.OperationalError as exc:
            self._down = True
            reason = " ".join(str(exc).split())  # libpq's message spans lines
            raise StateUnavailableError(f"{self.describe()}: {reason}") from exc

    def ping(self) -> None:
        """Raise :class:`StateUnavailableError` within two seconds if the server does not answer."""
        session = _Session(self, self._connection(timeout=2.0), reads_only=True)
        try:
            session.execute("SELECT 1 FROM state LIMIT 1").fetchall()
        finally:
            self._pool_here().putconn(session.connection)

    def close(self) -> None:
        self._pools.close()

    # -- connections -------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        converted = self._statements.get(statement)
        if converted is None:
            converted = self._statements[statement] = statement.replace("?", "%s")
        return converted

    def _pool_here(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return self._pools.get()

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            kwargs={
                "autocommit": True,  # transactions are opened by hand, so reads need none
                "connect_timeout": max(1, int(self.timeout)),
                "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}",
            },
            open=False,
            timeout=self.timeout,
            name="conveyor-state",
        )

    def _connection(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        pool = self._pool_here()
        wait = self.timeout if timeout is None else timeout
        if self._down:
            # The server was unreachable a moment ago: fail fast (an HTTP client gets its 503 at
            # once) rather than let every call wait out the full timeout.
            wait = min(wait, DOWN_TIMEOUT)
        try:
            connection = pool.getconn(timeout=wait)
        except PoolTimeout as exc:
            self._down = True
            raise StateUnavailableError(
                f"{self.describe()}: no connection within {wait:g}s; is the server running?"
            ) from exc
        self._down = False
        if not self._schema_ready:
            try:
                self._make_schema(connection)
            except BaseException:
                pool.putconn(connection)
                raise
        return connection

    def _make_schema(self, connection: psycopg.Connection[Any]) -> None:
        # A read first: the DDL takes strong locks on live tables (ALTER TABLE an exclusive one), which
        # would queue every process's start behind the transactions running, and deadlock with them.
        try:
            if self._schema_version(connection) == SCHEMA_VERSION:
                self._schema_ready = True
                return
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.execute("DELETE FROM conveyor_schema")
                connection.execute("INSERT INTO conveyor_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
        except psycopg.OperationalError as exc:
            raise StateUnavailableError(f"{self.describe()}: {' '.join(str(exc).split())}") from exc
        self._schema_ready = True

    @staticmethod
    def _schema_version(connection: psycopg.Connection[Any]) -> int | None:
        with connection.transaction():
            if connection.execute("SELECT to_regclass('conveyor_schema')").fetchone() in (None, (None,)):
                return None
            row = connection.execute("SELECT max(version) FROM conveyor_schema").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _reader(self) -> Iterator[_Session]:
        session = _Session(self, self._connection(), reads_only=True)
        try:
            yield session
        finally:
            self._pool_here().putconn(session.connection)  # a broken connection is dropped by the pool

    def _begin(self) -> _Session:
        pool = self._pool_here()
        # After a server restart the pool's idle connections are dead: try fresh ones before failing.
        for attempt in range(self.pool_size + 1):
            connection = self._connection()
            try:
                connection.execute("BEGIN")
                return _Session(self, connection, reads_only=False)
            except psycopg.OperationalError as exc:
                pool.putconn(connection)
                if attempt == self.pool_size:
                    raise StateUnavailableError(f"{self.describe()}: {exc}".strip()) from exc
        raise AssertionError("unreachable")

    def _end(self, session: _Session, *, commit: bool) -> None:
        try:
            if commit:
                session.execute("COMMIT")
            elif not session.connection.broken:
                session.connection.execute("ROLLBACK")
        except psycopg.OperationalError:
            if commit:
                raise
        finally:
            self._pool_here().putconn(session.connection)

    def _limit_waits(self, connection: Any, lock_timeout: float | None, idle_timeout: float | None) -> None:
        # Local to this transaction (set_config's `true`): the pooled session keeps its defaults.
        for setting, seconds in (("lock_timeout", lock_timeout), ("idle_in_transaction_session_timeout", idle_timeout)):
            if seconds is not None:
                connection.execute("SELECT set_config(?, ?, true)", (setting, f"{max(1, round(seconds * 1000))}ms"))

    def _lock(self, connection: Any, group: str, key: str) -> None:
        connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{group}\x1f{key}",))
