"""Delayed messages on RabbitMQ without holding them in a worker: per-delay TTL queues.

A message delayed by D ms is published to ``<queue>.delay.<D>ms``, a queue whose messages
expire after D ms and are then dead-lettered by RabbitMQ into ``<queue>``. Nothing consumes
the delay queue, so no worker holds the message for D ms (Dramatiq's own delay queue does,
unacknowledged, which RabbitMQ's ``consumer_timeout`` cuts short and a restart replays), and
the message survives worker and broker restarts like any durable message.

Delays are rounded up (to 10 ms below a second, to three significant digits above), so a
message never runs early and a few distinct delays share a queue. An idle delay queue
deletes itself (``x-expires``) some time after its last message was due.
"""

from __future__ import annotations

import math
import time
from typing import Any

#: A delay queue lives this long past its delay after its last declaration.
EXPIRY_MARGIN_MS = 15 * 60 * 1000

#: Re-declare (which resets ``x-expires``) when the last declaration is older than this.
REDECLARE_AFTER = 5 * 60.0


def delay_bucket(delay_ms: int) -> int:
    """The delay actually applied: ``delay_ms`` rounded up.

    >>> delay_bucket(1), delay_bucket(999), delay_bucket(37_234), delay_bucket(40 * 60_000)
    (10, 1000, 37300, 2400000)
    """
    delay_ms = max(1, int(delay_ms))
    if delay_ms < 1000:
        return math.ceil(delay_ms / 10) * 10
    step = 10 ** (len(str(delay_ms)) - 3)
    return int(math.ceil(delay_ms / step) * step)


def delay_queue(queue_name: str, delay_ms: int) -> tuple[str, dict[str, Any]]:
    """The delay queue for ``queue_name`` and ``delay_ms``, and the arguments to declare it with."""
    bucket = delay_bucket(delay_ms)
    return f"{queue_name}.delay.{bucket}ms", {
        "x-message-ttl": bucket,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue_name,
        "x-expires": bucket + EXPIRY_MARGIN_MS,
    }


class DeclaredQueues:
    """Remembers when each delay queue was last declared, so a publisher re-declares in time."""

    def __init__(self) -> None:
        self._declared: dict[str, float] = {}

    def stale(self, name: str) -> bool:
        return time.monotonic() - self._declared.get(name, -math.inf) > REDECLARE_AFTER

    def declared(self, name: str) -> None:
        self._declared[name] = time.monotonic()

    def forget(self, name: str | None = None) -> None:
        if name is None:
            self._declared.clear()
        else:
            self._declared.pop(name, None)
