"""Delayed messages on RabbitMQ without holding them in a worker: per-delay TTL queues.

A message delayed by D ms is published to ``<queue>.delay.<D>ms``, a queue whose messages
expire after D ms and are then dead-lettered by RabbitMQ into ``<queue>``. Nothing consumes
the delay queue, so no worker holds the message for D ms (Dramatiq's own delay queue does,
unacknowledged, which RabbitMQ's ``consumer_timeout`` cuts short and a restart replays), and
the message survives worker and broker restarts like any durable message. D is zero-padded
to 10 digits (``ProcessOrder.delay.0000000500ms``) so that a step's delay queues sort by delay.

Delays are rounded up (to 10 ms below a second, to three significant digits above), so a
message never runs early and a few distinct delays share a queue. An idle classic delay
queue deletes itself (``x-expires``) some time after its last message was due. Quorum queues
do not renew ``x-expires`` when declared again, so one could expire with messages in it:
they are declared without it, and a :class:`DelayQueueJanitor` deletes the idle empty ones.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from .connections import own_connection
from .queues import AT_LEAST_ONCE, QUORUM, QueueType

#: A delay queue lives this long past its delay after its last declaration.
EXPIRY_MARGIN_MS = 15 * 60 * 1000

#: Re-declare (which resets ``x-expires``) when the last declaration is older than this.
REDECLARE_AFTER = 5 * 60.0

#: Seconds an empty quorum delay queue stays quiet before the janitor deletes it: longer than a
#: publisher trusts its last declaration (:data:`REDECLARE_AFTER`), as ``x-expires`` is for classic ones.
IDLE_REMOVAL_AFTER = EXPIRY_MARGIN_MS / 1000

#: Digits of the delay in a delay queue's name: RabbitMQ's longest TTL, 2^32-1 ms, has 10.
DELAY_DIGITS = 10


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


def delay_queue(queue_name: str, delay_ms: int, queue_type: QueueType = "classic") -> tuple[str, dict[str, Any]]:
    """The delay queue for ``queue_name`` and ``delay_ms``, and the arguments to declare it with.

    >>> delay_queue("ProcessOrder", 480)[0]
    'ProcessOrder.delay.0000000480ms'
    """
    bucket = delay_bucket(delay_ms)
    arguments: dict[str, Any] = {
        "x-message-ttl": bucket,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue_name,
    }
    if queue_type == "quorum":
        arguments |= QUORUM | AT_LEAST_ONCE  # expiry into the step's queue must not lose the message
    else:
        arguments["x-expires"] = bucket + EXPIRY_MARGIN_MS
    return f"{queue_name}.delay.{bucket:0{DELAY_DIGITS}d}ms", arguments


def is_delay_queue(name: str, queue_name: str) -> bool:
    """Whether ``name`` is one of ``queue_name``'s delay queues (the unpadded names of older versions too)."""
    return re.fullmatch(re.escape(queue_name) + r"\.delay\.\d+ms", name) is not None


class DelayQueueJanitor:
    """Deletes the quorum delay queues that stayed empty, with nothing published to them, for a while.

    RabbitMQ's management API tells neither when a quorum queue was last used nor who still
    counts on it, so the janitor watches: a delay queue is deleted once calls of
    :meth:`remove_idle` at least ``idle_for`` seconds apart all saw it empty with the same
    publish count, and it is still empty right before (quorum queues do not take ``if_empty``
    on RabbitMQ 3.10, so a message published within that round trip would go with the queue:
    hence the long quiet first). Keep one janitor and call it every few minutes.

    Parameters:
      broker: the RabbitMQ broker (its nodes are used).
      idle_for: seconds a queue must stay quiet; longer than a publisher trusts its last declaration.
      clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        broker: RabbitmqBroker,
        *,
        idle_for: float = IDLE_REMOVAL_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.idle_for = idle_for
        self.clock = clock
        #: delay queue -> (when it was first seen quiet, its publish count then)
        self._quiet: dict[str, tuple[float, int]] = {}

    def remove_idle(self, queue_names: Iterable[str], queues: Mapping[str, Mapping[str, Any]]) -> int:
        """Delete the idle delay queues of ``queue_names``; returns how many were deleted.

        ``queues`` is the management API's listing of the virtual host (``ManagementAPI.queues()``:
        name -> ``messages`` and ``message_stats.publish``).
        """
        now = self.clock()
        targets = list(queue_names)
        idle: list[str] = []
        quiet: dict[str, tuple[float, int]] = {}
        for name, figures in queues.items():
            if figures.get("messages") or not any(is_delay_queue(name, target) for target in targets):
                continue
            published = int((figures.get("message_stats") or {}).get("publish") or 0)
            since, before = self._quiet.get(name, (now, published))
            if before != published:
                since = now  # something was published since the last look: quiet from now on
            quiet[name] = (since, published)
            if now - since >= self.idle_for:
                idle.append(name)
        self._quiet = quiet
        return self._delete_if_empty(idle)

    def _delete_if_empty(self, names: list[str]) -> int:
        if not names:
            return 0
        removed = 0
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            for name in names:
                try:
                    # Quorum queues refuse queue.delete with if-empty (RabbitMQ 3.10): look right before.
                    declared = channel.queue_declare(name, passive=True).method
                    if declared.message_count or declared.consumer_count:
                        continue
                    channel.queue_delete(name)
                    removed += 1
                    self._quiet.pop(name, None)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()  # already gone: keep going
        return removed


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
