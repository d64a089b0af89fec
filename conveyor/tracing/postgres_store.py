"""Traces in the state's PostgreSQL database, in tables of their own (``conveyor_trace_*``), which
processes on any number of hosts write at once.

Writers of the same trace queue on a transaction-level advisory lock per trace, taken in one
order (sorted keys), so two batches never deadlock and each summary is computed from every
committed span of its trace. The tables are made once: a start finds the version row current
and runs no DDL (which would take strong locks on live tables). Each process makes its own
pool on its first call, after any fork.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StateUnavailableError
from ..process_pool import ProcessPool
from .schema import SCHEMA_VERSION, schema
from .sql import Runner, SqlTraceStore

VERSION_TABLE = "conveyor_trace_schema"
#: Serialises the schema's creation across processes ("ctrc").
_SCHEMA_LOCK = 0x63747263
#: Statements with ``?`` placeholders, as psycopg takes them.
_converted: dict[str, str] = {}


def trace_lock_key(trace_id: str) -> int:
    """The advisory lock key of a trace: a signed 64-bit number (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "big", signed=True)


class _Connection:
    """A :class:`~conveyor.tracing.sql.Runner` over a psycopg connection; ``?`` becomes ``%s``."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def _sql(self, statement: str) -> str:
        converted = _converted.get(statement)
        if converted is None:
            converted = _converted[statement] = statement.replace("?", "%s")
        return converted

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.connection.execute(self._sql(statement), params).fetchall()

    def run(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(self._sql(statement), params)

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.connection.cursor() as cursor:
            cursor.executemany(self._sql(statement), rows)
            return cursor.rowcount


class PostgresTraceStore(SqlTraceStore):
    """The trace store in the PostgreSQL database at ``url`` (the state's, as a rule).

    Parameters:
      url: ``postgresql://user:password@host:port/db``; the ``conveyor_trace_*`` tables are made on first use.
      pool_size: connections this process may hold (the recorder's thread, plus the console's readers).
      timeout: how long a call waits for a connection before :class:`~conveyor.errors.StateUnavailableError`.
    """

    like = "ILIKE"
    least = "LEAST"
    greatest = "GREATEST"

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 5.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pools = ProcessPool(self._new_pool)
        self._schema_ready = False

    def describe(self) -> str:
        parts = conninfo_to_dict(self.url)
        return f"the traces in PostgreSQL at {parts.get('host', 'localhost')}:{parts.get('port', 5432)}/" + str(
            parts.get("dbname", "")
        )

    def close(self) -> None:
        """Close this process's pool."""
        self._pools.close()

    def _pool_here(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return self._pools.get()

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(self.timeout))},
            open=False,
            timeout=self.timeout,
            name="conveyor-traces",
        )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._pool_here()
        try:
            connection = pool.getconn()
        except PoolTimeout as exc:
            raise StateUnavailableError(
                f"{self.describe()}: no connection within {self.timeout:g}s; is the server running?"
            ) from exc
        try:
            if not self._schema_ready:
                self._make_schema(connection)
            yield connection
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None or exc.sqlstate[:2] in ("08", "53", "57"):
                raise StateUnavailableError(f"{self.describe()}: {' '.join(str(exc).split())}") from exc
            raise
        finally:
            pool.putconn(connection)  # a broken connection is dropped by the pool

    def _make_schema(self, connection: psycopg.Connection[Any]) -> None:
        if self.schema_version(connection) != SCHEMA_VERSION:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in schema("id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"):
                    connection.execute(statement)
                connection.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
                connection.execute(f"DELETE FROM {VERSION_TABLE}")
                connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", (SCHEMA_VERSION,))
        self._schema_ready = True

    @staticmethod
    def schema_version(connection: psycopg.Connection[Any]) -> int | None:
        """The version of the trace tables in the database ``connection`` is on (``None``: none made yet)."""
        with connection.transaction():
            if connection.execute(f"SELECT to_regclass('{VERSION_TABLE}')").fetchone() in (None, (None,)):
                return None
            row = connection.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _reading(self) -> Iterator[Runner]:
        with self._connection() as connection:
            yield _Connection(connection)

    @contextmanager
    def _writing(self) -> Iterator[Runner]:
        with self._connection() as connection, connection.transaction():
            yield _Connection(connection)

    def _lock_traces(self, db: Runner, trace_ids: Sequence[str]) -> None:
        # One sorted order of keys for every writer and pruner: waits form no cycle, so no deadlock.
        keys = sorted({trace_lock_key(trace_id) for trace_id in trace_ids})
        if keys:
            db.rows("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(?::bigint[]) AS k", (keys,))

    def _member(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]
