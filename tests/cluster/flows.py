"""Probe steps for the cluster suite: a one-second cron, a slow step, a poison step and a state watcher."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from conveyor import AsyncContext, Context, Request, StateChange, cron, http, queue, state, step


class Probe(BaseModel):
    id: str
    sleep: float = 0.0


@step(name="EverySecond", flows=["cluster-probes"], triggers=[cron("* * * * * *")])
def every_second(_: None, ctx: Context) -> None:
    # Counted per message (one per tick): a tick fired or run twice would count 2.
    ctx.state.update("cron-runs", ctx.message_id or "-", [{"type": "increment", "path": "n"}])


@step(name="CountOnce", flows=["cluster-probes"], triggers=[queue("cluster.slow", input=Probe)])
def count_once(probe: Probe, ctx: Context) -> None:
    """Slow, then counts its probe once: a redelivered message finds its mark and adds nothing."""
    ctx.state.update("slow-started", probe.id, {str(os.getpid()): ctx.attempt})
    time.sleep(probe.sleep)
    with ctx.state.transaction():
        if ctx.state.get("counted", probe.id) is None:
            ctx.state.set("counted", probe.id, {"pid": os.getpid(), "message": ctx.message_id})
            ctx.state.update("effects", "total", [{"type": "increment", "path": "n"}])


@step(name="Poison", flows=["cluster-probes"], triggers=[queue("cluster.poison", input=Probe)])
def poison(probe: Probe, ctx: Context) -> None:
    """Takes its whole worker process down, every time."""
    ctx.state.update("poison-deliveries", probe.id, [{"type": "increment", "path": "n"}])
    os._exit(3)


@step(name="Refuses", flows=["cluster-probes"], triggers=[queue("cluster.refuses", input=Probe)], max_retries=0)
def refuses(probe: Probe, ctx: Context) -> None:
    """Fails at once, for good, until its probe is marked fixed: a dead message for the operator tools."""
    ctx.state.update("refused", probe.id, [{"type": "increment", "path": "n"}])
    if ctx.state.get("fixed", probe.id) is None:
        raise RuntimeError(f"not fixed yet: {probe.id}")


@step(
    name="ClusterEnqueue",
    flows=["cluster-probes"],
    triggers=[http("POST", "/_cluster/:topic", body=Probe)],
    enqueues=["cluster.slow", "cluster.poison", "cluster.refuses"],
)
async def enqueue(request: Request, ctx: AsyncContext) -> dict[str, object]:
    ids = await ctx.enqueue(request.path_params["topic"], request.body.model_dump())
    return {"status": 202, "body": {"messageIds": ids}}


@step(name="WatchSwept", flows=["cluster-probes"], triggers=[state("swept")])
def watch_swept(change: StateChange, ctx: Context) -> None:
    ctx.state.update("swept-seen", change.key, [{"type": "increment", "path": "n"}])
