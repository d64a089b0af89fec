"""The order benchmark's load and meters: POSTing orders from keep-alive connections, CPU time by process."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .harness import (
    BenchError,
    children,
    cpu_seconds,
    note,
)

if TYPE_CHECKING:
    from .order_trial import Trial

ITEMS: list[dict[str, Any]] = [
    {"productId": "prod-1", "quantity": 2, "price": 19.99},
    {"productId": "prod-2", "quantity": 1, "price": 49.99},
]
#: The README's order, as bench.pipeline posts it.
ORDER = {"customerId": "customer-123", "items": ITEMS}


# -- CPU ------------------------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds each part of a trial uses from now on: gateway, workers (dramatiq master included), RabbitMQ,
    the client (this process) and, on the bench's own PostgreSQL, the server."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial
        self.start = self._reading()

    def _reading(self) -> dict[str, dict[int, float]]:
        bench = self.trial.bench
        running = bench.processes.running
        master = running[self.trial.names["workers"]].pid
        pids: dict[str, list[int]] = {
            "gateway": [running[self.trial.names["gateway"]].pid],
            "workers": [master, *children(master)],
            "rabbitmq": [pid] if (pid := bench.node_pid()) is not None else [],
            "client": [os.getpid()],
        }
        if self.trial.postgres is not None and self.trial.postgres.server is not None:
            pids["postgres"] = self.trial.postgres.server_pids()
        reading: dict[str, dict[int, float]] = {}
        for name, group in pids.items():
            reading[name] = {}
            for pid in group:
                try:
                    reading[name][pid] = cpu_seconds(pid)
                except OSError:
                    continue  # exited meanwhile
        return reading

    def used(self) -> dict[str, float]:
        """CPU seconds since the meter started, by part (processes gone by now are left out)."""
        end = self._reading()
        return {
            name: sum(seconds - self.start.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in end.items()
        }


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Posted:
    """What a POST phase got back."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    #: The top-level fields of the first order answered, to check both systems answer the same shape.
    fields: list[str] | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def requests(self) -> int:
        return self.ok + self.failed


async def post_orders(
    url: str, concurrency: int, *, deadline: float, orders: int | None = None, seconds: float | None = None
) -> Posted:
    """POST the order ``orders`` times, or for ``seconds``, from ``concurrency`` tasks on as many connections."""
    posted = Posted()
    remaining = iter(range(orders)) if orders is not None else None
    until = time.monotonic() + seconds if seconds is not None else deadline
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def more() -> bool:
        now = time.monotonic()
        if now > deadline:
            raise BenchError("a POST phase ran past --timeout")
        if remaining is not None:
            return next(remaining, None) is not None
        return now < until

    async def client(http: httpx.AsyncClient) -> None:
        while more():
            sent = time.monotonic()
            try:
                response = await http.post("/orders", json=ORDER)
                outcome = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            if outcome == "ok":
                posted.latencies.append(time.monotonic() - sent)
                if posted.fields is None:
                    posted.fields = sorted(response.json())
            else:
                posted.failures[outcome] = posted.failures.get(outcome, 0) + 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    if posted.failures:
        note(f"failed POSTs: {posted.failures}")
    return posted


# -- figures --------------------------------------------------------------------------------------
