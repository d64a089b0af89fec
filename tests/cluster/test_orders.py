"""Orders across two gateways on a 3-node quorum cluster: all processed, stock exact, through a leader's
death and a gateway's, with one order per Idempotency-Key."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from devtools.processes import wait_for
from tests.cluster.deployment import NAME, Deployment
from tests.cluster.load import PRODUCT, LoadFigures, completed_orders, orders_by_key, post_orders

STOCK = 1_000_000
#: The queue whose leader the fault kills: every order passes through it.
PROCESS_ORDER = f"{NAME}.order-processing.ProcessOrder"

pytestmark = pytest.mark.cluster


def stock(deployment: Deployment) -> int:
    value = deployment.state.get("inventory", PRODUCT)
    if value is None:
        deployment.state.set("inventory", PRODUCT, {"stock": STOCK})
        return STOCK
    return int(value["stock"])


class Progress(threading.Thread):
    """Samples how many of the run's orders completed, to see how long processing stalled."""

    def __init__(self, deployment: Deployment, figures: LoadFigures) -> None:
        super().__init__(daemon=True)
        self.deployment, self.figures = deployment, figures
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            count = len(completed_orders(self.deployment.state, list(self.figures.accepted)))
            self.samples.append((time.time(), count))

    def longest_stall(self, after: float) -> float:
        """The longest time, after ``after``, that the count of completed orders stood still (until the last sample)."""
        longest, since, last = 0.0, None, -1
        for at, count in self.samples:
            if at < after:
                last = count
                continue
            if count != last:
                if since is not None:
                    longest = max(longest, at - since)
                since, last = at, count
        return longest


def drain(deployment: Deployment, figures: LoadFigures, timeout: float = 180) -> dict[str, list[dict[str, object]]]:
    keys = list(figures.accepted)
    wait_for(
        lambda: len(completed_orders(deployment.state, keys)) >= len(keys),
        timeout,
        what=f"{len(keys)} accepted orders to complete",
        interval=0.5,
    )
    return completed_orders(deployment.state, keys)


def test_orders_posted_to_both_gateways_are_all_processed_and_stock_is_exact(deployment: Deployment) -> None:
    before = stock(deployment)
    started = time.monotonic()
    figures = asyncio.run(post_orders([deployment.gateway_url(0), deployment.gateway_url(1)], 200, 40, run="plain"))
    completed = drain(deployment, figures)
    elapsed = time.monotonic() - started
    per_gateway = [sum(1 for a in figures.attempts if a.gateway == n and a.outcome == "200") for n in (0, 1)]
    print(
        f"\n[cluster 1] {len(figures.accepted)}/200 accepted ({per_gateway} per gateway), {len(completed)} completed "
        f"in {elapsed:.1f}s; stock {before} -> {stock(deployment)}"
    )
    assert len(figures.accepted) == 200 and min(per_gateway) >= 90
    assert all(len(orders) == 1 for orders in completed.values())
    assert stock(deployment) == before - len(completed) == before - 200


def test_leader_and_gateway_killed_mid_stream_lose_nothing_and_keys_make_one_order(deployment: Deployment) -> None:
    """Two streams at once: plain POSTs, each sent once (C2), and keyed POSTs retried until accepted (C7)."""
    before = stock(deployment)
    leader = deployment.cluster.node_named(deployment.queue_leader(PROCESS_ORDER))
    urls = [deployment.gateway_url(0), deployment.gateway_url(1)]
    faults: dict[str, float] = {}
    plain, keyed = LoadFigures(), LoadFigures()

    async def inject() -> None:
        await asyncio.sleep(3)
        faults["leader killed"] = time.time()
        await asyncio.to_thread(deployment.cluster.kill, leader)
        await asyncio.sleep(5)
        faults["gateway killed"] = time.time()
        await asyncio.to_thread(deployment.kill, "gateway1")
        await asyncio.sleep(1)
        await asyncio.to_thread(deployment.start_gateway, 1)

    async def run() -> None:
        await asyncio.gather(
            post_orders(urls, 300, 20, run="plain-faults", keyed=False, figures=plain),
            post_orders(urls, 300, 20, run="keyed-faults", figures=keyed),
            inject(),
        )

    progress = Progress(deployment, plain)
    progress.start()
    try:
        asyncio.run(run())
        restarted = time.monotonic()
        deployment.cluster.restart(leader)
        rejoin = time.monotonic() - restarted
        plain_done = drain(deployment, plain)
        keyed_done = drain(deployment, keyed)
    finally:
        progress.done.set()
    stall = progress.longest_stall(after=faults["leader killed"])
    refused = plain.refused()
    made = orders_by_key(deployment.state, keyed.keys)
    print(
        f"\n[cluster 2] plain: {len(plain.accepted)}/300 accepted, all {len(plain_done)} processed; answers "
        f"{plain.by_outcome()}, the refusals over {plain.window():.1f}s, the first "
        f"{min((a.at for a in refused), default=faults['leader killed']) - faults['leader killed']:+.1f}s after "
        f"the kill; processing stalled at most {stall:.1f}s; the killed node rejoined in {rejoin:.1f}s"
    )
    print(
        f"[cluster 7] keyed: {len(keyed.accepted)}/300 keys accepted after {len(keyed.attempts)} attempts "
        f"{keyed.by_outcome()}; processed orders per key: {sorted({len(o) for o in keyed_done.values()})}; "
        f"keys with an orphan pending order left by the killed gateway: {sum(1 for n in made.values() if n > 1)}"
    )
    # Counted over every key: a plain POST whose gateway died before answering may still have made its order.
    processed = sum(len(orders) for orders in completed_orders(deployment.state, plain.keys + keyed.keys).values())
    print(f"[cluster 2+7] stock {before} -> {stock(deployment)} for {processed} processed orders")
    assert len(plain_done) == len(plain.accepted)  # 0 accepted orders lost
    assert plain.window() < 30  # refusals only around the faults
    assert stall < 30  # workers consume again within seconds
    assert not keyed.gave_up and len(keyed.accepted) == 300
    assert len(keyed_done) == 300 and all(len(orders) == 1 for orders in keyed_done.values())
    assert stock(deployment) == before - processed
