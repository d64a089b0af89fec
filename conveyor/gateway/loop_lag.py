"""How late the gateway's event loop wakes up: the probe behind ``GET /_admin/loop``.

A handler that blocks the loop (a blocking call in an ``async def`` handler, a slow
serialisation) delays every request the process serves. The probe sleeps a short interval
over and over and records how much later than asked it woke.
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
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - asked)
            self._lags.append(lag)
            self._worst = max(self._worst, lag)
            self._samples += 1

    def figures(self) -> dict[str, Any]:
        """``{"lag_ms": {"max", "p99", "p50", "samples"}, "interval_ms"}`` since the start or the last reset."""
        ordered = sorted(self._lags)

        def at(fraction: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2) if ordered else 0.0

        return {
            "lag_ms": {"max": round(self._worst * 1000, 2), "p99": at(0.99), "p50": at(0.5), "samples": self._samples},
            "interval_ms": self.interval * 1000,
        }

    def reset(self) -> None:
        """Forget what was sampled so far."""
        self._lags.clear()
        self._worst = 0.0
        self._samples = 0
