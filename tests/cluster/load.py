"""A client that posts orders round-robin to the gateways, as a careful one would: every order carries
an Idempotency-Key, and a refused or unanswered POST is retried with the same key (on the next gateway)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import httpx

from conveyor import StateStore

PRODUCT = "cluster-widget"


@dataclass
class Attempt:
    key: str
    at: float
    gateway: int
    outcome: str  # "200", "503", "unreachable", ...


@dataclass
class LoadFigures:
    keys: list[str] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # key -> orderId answered
    attempts: list[Attempt] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)

    def refused(self, outcome: str | None = None) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome != "200" and (outcome is None or a.outcome == outcome)]

    def window(self, outcome: str | None = None) -> float:
        """Seconds from the first refused attempt to the last (0 when none was refused)."""
        times = [a.at for a in self.refused(outcome)]
        return max(times) - min(times) if times else 0.0

    def by_outcome(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for attempt in self.attempts:
            counts[attempt.outcome] = counts.get(attempt.outcome, 0) + 1
        return counts


async def post_orders(
    gateway_urls: list[str],
    orders: int,
    rate: float,
    *,
    run: str,
    keyed: bool = True,
    give_up_after: float = 60.0,
    figures: LoadFigures | None = None,
) -> LoadFigures:
    """Post ``orders`` orders at ``rate`` a second, order n to gateway n mod len.

    ``keyed``: each order carries an Idempotency-Key and is retried (on the next gateway) until
    answered 200; otherwise each order is posted once, without a key, whatever its answer.
    ``figures`` (new by default) fills in as the orders go, for a watcher to read meanwhile.
    """
    figures = LoadFigures() if figures is None else figures
    body_items = [{"productId": PRODUCT, "quantity": 1, "price": 2.5}]
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(n: int) -> None:
            key = f"{run}-{n}-{uuid.uuid4().hex[:8]}"
            figures.keys.append(key)
            body = {"customerId": key, "items": body_items}
            started = time.monotonic()
            attempt = 0
            while True:
                gateway = (n + attempt) % len(gateway_urls)
                outcome = "200"
                try:
                    response = await client.post(
                        gateway_urls[gateway] + "/orders", json=body, headers={"Idempotency-Key": key} if keyed else {}
                    )
                    if response.status_code == 200:
                        figures.accepted[key] = response.json()["orderId"]
                    else:
                        outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = "unreachable" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
                figures.attempts.append(Attempt(key, time.time(), gateway, outcome))
                if outcome == "200" or not keyed:
                    return
                if time.monotonic() - started > give_up_after:
                    figures.gave_up.append(key)
                    return
                attempt += 1
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))

        tasks = []
        started = time.monotonic()
        for n in range(orders):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return figures


def completed_orders(state: StateStore, keys: list[str]) -> dict[str, list[dict[str, object]]]:
    """The orders in the state, by the key (customerId) that created them, completed ones only."""
    wanted = set(keys)
    found: dict[str, list[dict[str, object]]] = {}
    for order in state.list("orders"):
        if order.get("customerId") in wanted and order.get("status") == "completed":
            found.setdefault(str(order["customerId"]), []).append(order)
    return found


def orders_by_key(state: StateStore, keys: list[str]) -> dict[str, int]:
    """How many orders (any status) each key created."""
    wanted = set(keys)
    counts: dict[str, int] = {}
    for order in state.list("orders"):
        if order.get("customerId") in wanted:
            counts[str(order["customerId"])] = counts.get(str(order["customerId"]), 0) + 1
    return counts
