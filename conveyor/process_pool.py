"""A psycopg connection pool of this process's own: made on first use, made again after a fork.

A forked child must never use, nor close, the pool it inherited: its connections are the
parent's sessions on the server. The state store and the trace store on PostgreSQL both keep
their pool in a :class:`ProcessPool`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

#: Pools children inherited through fork: kept, never closed, so the parent's sessions live on.
_inherited: list[object] = []

Pool = ConnectionPool[psycopg.Connection[Any]]


class ProcessPool:
    """The pool ``make()`` builds, one per process.

    Parameters:
      make: builds a closed pool (``open=False``); :meth:`get` opens it without waiting.
    """

    def __init__(self, make: Callable[[], Pool]) -> None:
        self._make = make
        self._guard = threading.Lock()
        self._pool: Pool | None = None
        self._pid = 0

    def get(self) -> Pool:
        """This process's pool, made now if it has none yet."""
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._guard:
            if self._pool is not None and self._pid == os.getpid():
                return self._pool
            if self._pool is not None:
                _inherited.append(self._pool)
            pool = self._make()
            pool.open(wait=False)
            self._pool, self._pid = pool, os.getpid()
            return pool

    def current(self) -> Pool | None:
        """This process's pool if it made one, else ``None`` (an inherited one does not count)."""
        with self._guard:
            return self._pool if self._pool is not None and self._pid == os.getpid() else None

    def close(self) -> None:
        """Close this process's pool (an inherited one is left alone)."""
        with self._guard:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
