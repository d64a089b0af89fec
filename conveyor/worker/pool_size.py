"""Size a worker process's state connections to its threads, once Dramatiq has started them."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ..store import StateStore

#: Connections beyond one per worker thread: the outbox publishes and the heartbeat of a busy pool.
SPARE_CONNECTIONS = 2


class SizeStatePool(Middleware):
    """Give each worker process's PostgreSQL pool one connection per worker thread, plus spares.

    ``[state] pool_size`` in config.toml, when set, wins. SQLite needs no pool.
    """

    def __init__(self, state: StateStore, configured: int | None) -> None:
        self.state = state
        self.configured = configured

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        resize = getattr(self.state, "resize", None)
        if resize is not None:
            resize(self.configured or worker.worker_threads + SPARE_CONNECTIONS)
