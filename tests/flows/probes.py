"""Probe steps the integration tests drive through a real gateway, RabbitMQ and workers."""

from __future__ import annotations

import os
import time
from typing import Any

from pydantic import BaseModel

from conveyor import Context, Request, cron, http, queue, step


class Envelope(BaseModel):
    data: Any


class Probe(BaseModel):
    id: str
    sleep: float = 0.0


@step(
    name="TestEnqueue",
    triggers=[http("POST", "/_test/enqueue/:topic", body=Envelope)],
    enqueues=["test.always-fails", "test.slow", "test.fanout"],
)
async def enqueue(request: Request, ctx: Context) -> dict[str, Any]:
    ids = await ctx.enqueue(request.path_params["topic"], request.body.data)
    return {"status": 202, "body": {"messageIds": ids}}


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
async def fanout_b(probe: Probe, ctx: Context) -> None:
    ctx.state.set("fanout", f"B-{probe.id}", {"topic": ctx.topic})


@step(name="TestTick", triggers=[cron("0 0 1 1 *")])
def tick(_: None, ctx: Context) -> None:
    ctx.state.update("ticks", "count", [{"type": "increment", "path": "n"}])
