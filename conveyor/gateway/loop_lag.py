"""How late the gateway's event loop wakes up: the probe behind ``GET /_admin/loop``.

A handler that blocks the loop (a blocking call in an ``async def`` handler, a slow
serialisation) delays every request the process serves. The probe sleeps a short interval
over and over and records how much later than asked it woke. A late wake-up has two causes:
code held the loop (a blocking call, or long work between two awaits), or the loop's thread
waited for a core other processes held. Linux counts the second (``/proc/thread-self/schedstat``:
time spent runnable but not running), so the probe reports the lag and the part of it that no
core was free (``starved``); what remains (``blocked``) is the loop's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

#: Seconds between two wake-ups of the probe.
INTERVAL = 0.02
#: Lags kept for the percentiles: the last few minutes at one sample per interval.
KEPT = 10_000


class LoopLag:
    """Samples the event loop's lag while :meth:`run` runs; :meth:`figures` summarises them."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._lags: collections.deque[float] = collections.deque(maxlen=KEPT)
        self._blocked: collections.deque[float] = collections.deque(maxlen=KEPT)
        self._starved: collections.deque[float] = collections.deque(maxlen=KEPT)
        self._worst = 0.0
        self._samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="conveyor-loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked, waited = loop.time() + self.interval, _runqueue_wait()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - asked)
            starved = min(lag, max(0.0, _runqueue_wait() - waited))
            self._lags.append(lag)
            self._starved.append(starved)
            self._blocked.append(lag - starved)
            self._worst = max(self._worst, lag)
            self._samples += 1

    def figures(self) -> dict[str, Any]:
        """``{"lag_ms": {"max", "p99", "p50", "samples"}, "blocked_ms": ..., "starved_ms": ..., "interval_ms"}``.

        Since the start or the last reset; ``blocked_ms`` and ``starved_ms`` have ``max`` and ``p99``.
        """
        return {
            "lag_ms": {
                "max": round(self._worst * 1000, 2),
                "p99": _at(self._lags, 0.99),
                "p50": _at(self._lags, 0.5),
                "samples": self._samples,
            },
            "blocked_ms": {"max": _at(self._blocked, 1.0), "p99": _at(self._blocked, 0.99)},
            "starved_ms": {"max": _at(self._starved, 1.0), "p99": _at(self._starved, 0.99)},
            "interval_ms": self.interval * 1000,
        }

    def reset(self) -> None:
        """Forget what was sampled so far."""
        self._lags.clear()
        self._blocked.clear()
        self._starved.clear()
        self._worst = 0.0
        self._samples = 0


def _at(values: collections.deque[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``values``, in milliseconds."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2) if ordered else 0.0


def _runqueue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a core (0 where Linux does not say)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
