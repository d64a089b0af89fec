"""Probe steps the integration tests drive through a real gateway, RabbitMQ and workers."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel

from conveyor import AsyncContext, Context, Request, StateChange, cron, http, queue, state, step


class Envelope(BaseModel):
    data: Any
    repeat: int = 1
    priority: str | int | None = None
    delay: float | None = None


class Probe(BaseModel):
    id: str
    sleep: float = 0.0


@step(
    name="TestEnqueue",
    triggers=[http("POST", "/_test/enqueue/:topic", body=Envelope)],
    enqueues=["test.always-fails", "test.slow", "test.fanout", "test.ordered", "test.limited", "test.quick"],
)
async def enqueue(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    envelope: Envelope = request.body
    ids: list[str] = []
    for n in range(envelope.repeat):
        data = {**envelope.data, "n": n} if envelope.repeat > 1 else envelope.data
        topic = request.path_params["topic"]
        ids += await ctx.enqueue(topic, data, priority=envelope.priority, delay=envelope.delay)
    return {"status": 202, "body": {"messageIds": ids}}


@step(
    name="TestEnqueueFromThread",
    triggers=[http("POST", "/_test/enqueue-sync/:topic", body=Envelope)],
    enqueues=["test.fanout"],
)
def enqueue_from_thread(request: Request, ctx: Context) -> dict[str, Any]:
    # A def handler runs in the gateway's thread pool; its enqueue still waits for RabbitMQ.
    ids = ctx.enqueue(request.path_params["topic"], request.body.data).message_ids
    return {"status": 202, "body": {"messageIds": ids}}


@step(name="TestSetState", triggers=[http("PUT", "/_test/state/:group/:key", body=Envelope)])
def set_state(request: Request, ctx: Context) -> dict[str, Any]:
    group, key = request.path_params["group"], request.path_params["key"]
    if request.body.data is None:
        ctx.state.delete(group, key)
    else:
        ctx.state.set(group, key, request.body.data)
    return {"status": 200, "body": {"traceId": ctx.trace_id}}


@step(name="AlwaysFails", triggers=[queue("test.always-fails", input=Probe)])
def always_fails(probe: Probe, ctx: Context) -> None:
    ctx.state.update("attempts", probe.id, {str(ctx.attempt): time.time()})
    raise RuntimeError(f"boom {probe.id}")


@step(name="DeadLetterSink", triggers=[queue("test.dead")])
def dead_letter_sink(record: dict[str, Any], ctx: Context) -> None:
    original = record["deadLetter"]["data"] or {}
    key = original.get("id") if isinstance(original, dict) and "id" in original else record["deadLetter"]["messageId"]
    ctx.state.set("dead", key, {**record, "receivedAt": time.time()})


@step(name="SlowProbe", triggers=[queue("test.slow", input=Probe)])
def slow_probe(probe: Probe, ctx: Context) -> None:
    ctx.state.update("slow-started", probe.id, {str(os.getpid()): ctx.attempt})
    time.sleep(probe.sleep)
    ctx.state.set("slow-done", probe.id, {"pid": os.getpid(), "attempt": ctx.attempt})


@step(name="FanoutA", triggers=[queue("test.fanout", input=Probe)])
def fanout_a(probe: Probe, ctx: Context) -> None:
    ctx.state.set("fanout", f"A-{probe.id}", {"topic": ctx.topic})


@step(name="FanoutB", triggers=[queue("test.fanout", input=Probe)])
async def fanout_b(probe: Probe, ctx: AsyncContext) -> None:
    await ctx.state.set("fanout", f"B-{probe.id}", {"topic": ctx.topic})


@step(name="TestTick", triggers=[cron("0 0 1 1 *")])
def tick(_: None, ctx: Context) -> None:
    ctx.state.update("ticks", "count", [{"type": "increment", "path": "n"}])


class Ordered(BaseModel):
    id: str
    kind: str
    n: int = 0


@step(name="OrderedProbe", triggers=[queue("test.ordered", input=Ordered)])
def ordered_probe(probe: Ordered, ctx: Context) -> None:
    position = ctx.state.update("ordered-counter", probe.id, [{"type": "increment", "path": "n"}])["n"]
    ctx.state.set(f"ordered-{probe.id}", f"{probe.kind}-{probe.n}", position)


@step(name="LimitedProbe", triggers=[queue("test.limited", input=Probe)])
def limited_probe(probe: Probe, ctx: Context) -> None:
    running = ctx.state.update("limited", probe.id, [{"type": "increment", "path": "running"}])["running"]
    # seen = max(seen, running), atomically: add nothing, but never below the current count.
    ctx.state.update("limited", probe.id, [{"type": "increment", "path": "seen", "by": 0, "min": running}])
    time.sleep(probe.sleep)
    ctx.state.update(
        "limited", probe.id, [{"type": "decrement", "path": "running"}, {"type": "increment", "path": "done"}]
    )


@step(name="QuickProbe", triggers=[queue("test.quick", input=Probe)])
def quick_probe(probe: Probe, ctx: Context) -> None:
    ctx.state.set("quick", probe.id, {"at": time.time(), "attempt": ctx.attempt})


@step(name="WatchDone", triggers=[state("watched", filter={"status": "done"})])
def watch_done(change: StateChange, ctx: Context) -> None:
    ctx.state.set("watch-log", f"{change.key}-{change.event}", {**change.model_dump(), "trace": ctx.trace_id})
