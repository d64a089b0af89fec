"""Queue depths read at scrape time: a collector the serving process alone registers.

The figures come from RabbitMQ's management API (:func:`conveyor.ops.queue_stats.queue_stats`),
kept a few seconds so frequent scrapes cost one request. While RabbitMQ cannot be asked (it is
down, or the broker is the in-memory one), the metrics are absent and ``/metrics`` still answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import UnsupportedBrokerError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..ops.queue_stats import QueueStats

logger = logging.getLogger("conveyor.metrics")

#: Seconds between two log lines saying queue depths are left out.
COMPLAINT_INTERVAL = 300.0


class QueueDepthCollector:
    """``conveyor_queue_messages{step,queue,state}`` and ``conveyor_queue_consumers{step,queue}``.

    Parameters:
      read: returns every step's :class:`~conveyor.ops.queue_stats.QueueStats` (blocking).
      cache_seconds: how long one reading is served before RabbitMQ is asked again (a failure too).
    """

    def __init__(self, read: Callable[[], Sequence[QueueStats]], *, cache_seconds: float = 5.0) -> None:
        self.read = read
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._stats: Sequence[QueueStats] | None = None
        self._complained = float("-inf")

    def describe(self) -> list[Metric]:
        # Registering must not ask RabbitMQ: describe nothing.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        stats = self._current()
        if stats is None:
            return
        messages = GaugeMetricFamily(
            "conveyor_queue_messages",
            "Messages in each step's queues by state: ready, unacked (taken by a worker), delayed, dead.",
            labels=["step", "queue", "state"],
        )
        consumers = GaugeMetricFamily(
            "conveyor_queue_consumers", "Consumers of each step's queue.", labels=["step", "queue"]
        )
        for stat in stats:
            for state, count in (
                ("ready", stat.ready),
                ("unacked", stat.unacknowledged),
                ("delayed", stat.delayed),
                ("dead", stat.dead_lettered),
            ):
                messages.add_metric([stat.step, stat.queue, state], count)
            consumers.add_metric([stat.step, stat.queue], stat.consumers)
        yield messages
        yield consumers

    def _current(self) -> Sequence[QueueStats] | None:
        with self._lock:  # concurrent scrapes: one asks, the others wait for its answer
            now = time.monotonic()
            if now - self._read_at < self.cache_seconds:
                return self._stats
            try:
                self._stats = self.read()
            except UnsupportedBrokerError:
                self._stats = None  # the in-memory broker has no queues to count
            except Exception as exc:
                self._stats = None
                if now - self._complained >= COMPLAINT_INTERVAL:
                    self._complained = now
                    logger.warning("Queue depths are left out of /metrics: %s", exc)
            self._read_at = time.monotonic()
            return self._stats
