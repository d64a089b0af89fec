"""How the order benchmark reads each system's state, and the PostgreSQL server Conveyor's state may go to."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from devtools.processes import descendants

from .harness import (
    BenchError,
    Harness,
    note,
)


class SqliteReader:
    """Counts and stock straight from a system's table in its SQLite file (the same query for both systems)."""

    def __init__(self, path: Path, table: str) -> None:
        if not path.exists():
            raise BenchError(f"no state db at {path} once the processes were up")
        self.table = table
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)

    def notifications(self) -> int:
        row = self.db.execute(f"SELECT count(*) FROM {self.table} WHERE grp = 'notifications'").fetchone()
        return int(row[0])

    def orders(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {self.table} WHERE grp = 'orders'").fetchone()[0])

    def failed_notifications(self) -> int:
        query = f"SELECT count(*) FROM {self.table} WHERE grp = 'notifications' AND value ->> '$.status' = 'failed'"
        return int(self.db.execute(query).fetchone()[0])

    def stock(self, product: str) -> int | None:
        query = f"SELECT value FROM {self.table} WHERE grp = 'inventory' AND key = ?"
        row = self.db.execute(query, (product,)).fetchone()
        return json.loads(row[0]).get("stock") if row else None

    def close(self) -> None:
        self.db.close()


class RuntimeStoreReader:
    """Conveyor's state through the store its runtime builds from the bench's config (PostgreSQL here).

    No flows are loaded: an empty registry is enough to build the state store the workers use.
    """

    def __init__(self, config_path: Path) -> None:
        from conveyor.config import load_config
        from conveyor.declare.registry import Registry
        from conveyor.runtime import build_runtime

        try:
            self.runtime = build_runtime(load_config(config_path), Registry())
        except Exception as exc:  # any failure here means the backend is not usable (yet)
            raise BenchError(f"cannot open Conveyor's state store from {config_path}: {exc}") from None
        self.store = self.runtime.state

    def notifications(self) -> int:
        return len(self.store.list("notifications"))

    def orders(self) -> int:
        return dict(self.store.groups()).get("orders", 0)

    def failed_notifications(self) -> int:
        return sum(1 for value in self.store.list("notifications") if value.get("status") == "failed")

    def stock(self, product: str) -> int | None:
        value = self.store.get("inventory", product)
        return value.get("stock") if value else None

    def close(self) -> None:
        self.runtime.close()


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A PostgreSQL server Conveyor's state goes to: a fresh database per run."""

    url: str
    #: The bench's own server (devtools' PostgresServer), whose processes' CPU time is counted.
    server: Any = None

    def fresh_database(self, name: str) -> str:
        """Create database ``name`` (dropping one left by an earlier run) and return its URL."""
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise BenchError(f"cannot create database {name} on {redacted(self.url)}: {exc}") from None
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{name}"))

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.url, autocommit=True) as db:
                db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            note(f"could not drop database {name}: {exc}")

    def server_pids(self) -> list[int]:
        """The server's processes (the postmaster and every backend), if it is the bench's own."""
        pid = self.server.pid if self.server is not None else None
        return [] if pid is None else [pid, *sorted(descendants(pid))]


@contextmanager
def bench_postgres(bench: Harness, state_url: str | None) -> Iterator[Postgres]:
    """The given server, or a throwaway one under the bench's temp dir (devtools' PostgresServer)."""
    if state_url:
        yield Postgres(state_url)
        return
    try:
        from devtools.postgres import PostgresServer
    except ImportError as exc:
        raise BenchError(f"--backends postgres needs devtools/postgres.py (PostgresServer): {exc}") from None
    server = PostgresServer(bench.base / "postgres")
    note(f"starting a throwaway PostgreSQL server on port {server.port} (log in {server.log_path})")
    try:
        server.start()
    except RuntimeError as exc:
        server.remove()
        raise BenchError(str(exc)) from None
    try:
        yield Postgres(server.url, server=server)
    finally:
        server.stop()
        server.remove()


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)


def remove_sqlite(path: Path, *, keep_as: Path | None = None) -> None:
    """Move or remove a SQLite file and its WAL, so the next system starts on a fresh one at the same path."""
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if not part.exists():
            continue
        if keep_as is not None:
            part.rename(keep_as.with_name(keep_as.name + suffix))
        else:
            part.unlink()
