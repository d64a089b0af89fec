"""The state store: JSON values by group and key, shared by every process, with atomic updates.

:class:`StateStore` is the interface; :func:`open_store` picks its backend: SQLite
(:mod:`.sqlite`, one file on one host, the default) or PostgreSQL (:mod:`.postgres`, shared
by many hosts). :class:`AsyncStateStore` gives ``async def`` handlers the same calls to
await. :mod:`.ops` holds Motia's update operations, :mod:`.outbox` publishes the state
triggers each write records and the messages a transaction stages, :mod:`.cron_fires`
claims cron ticks.
"""

from __future__ import annotations

from pathlib import Path

from .async_state import AsyncStateStore
from .base import StateStore
from .sqlite import SqliteStateStore
from .transactions import Pending, PendingMessage, PendingTrigger
from .values import MAX_NAME_LENGTH, TTL

__all__ = [
    "MAX_NAME_LENGTH",
    "TTL",
    "AsyncStateStore",
    "Pending",
    "PendingMessage",
    "PendingTrigger",
    "SqliteStateStore",
    "StateStore",
    "open_store",
]


def open_store(where: str | Path, *, pool_size: int = 10) -> StateStore:
    """The store at ``where``: a ``postgresql://`` URL, or the path of a SQLite file.

    Opening a SQLite file makes it (and its tables) if missing; a PostgreSQL store connects
    on first use, and makes its tables then.
    """
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStateStore  # psycopg loads only for stores that use it

        return PostgresStateStore(where, pool_size=pool_size)
    return SqliteStateStore(where)
