"""The toy flow's steps: POST /toys -> PackToy (may fail) -> ShipToy (a minute later)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from conveyor import AsyncContext, Context, Request, StateChange, cron, http, queue, state, step


class Toy(BaseModel):
    id: str
    fails: int = 0


class ToyId(BaseModel):
    id: str


@step(name="ReceiveToy", triggers=[http("POST", "/toys", body=Toy)], enqueues=["toy.pack"])
async def receive(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    await ctx.enqueue("toy.pack", request.body)
    return {"status": 202, "body": {"id": request.body.id}}


@step(
    name="PackToy",
    triggers=[queue("toy.pack", input=Toy)],
    enqueues=["toy.ship"],
    dead_letter_queue="toy.lost",
)
def pack(toy: Toy, ctx: Context) -> None:
    assert ctx.attempt is not None
    ctx.state.set("toys", toy.id, {"stage": "packing", "attempts": ctx.attempt})
    if ctx.attempt <= toy.fails:
        raise RuntimeError(f"box jammed on attempt {ctx.attempt}")
    ctx.enqueue("toy.ship", {"id": toy.id}, delay=60)


@step(name="LoseToy", triggers=[queue("toy.lost")])
def lose(record: dict[str, Any], ctx: Context) -> None:
    ctx.state.set("toys", record["id"], {"stage": "lost", "attempts": record["deadLetter"]["attempts"]})


@step(name="ShipToy", triggers=[queue("toy.ship", input=ToyId)])
def ship(toy: ToyId, ctx: Context) -> None:
    known = {"broken": None}
    if toy.id in known:
        raise KeyError(toy.id)
    ctx.state.update("toys", toy.id, {"stage": "shipped"})
    ctx.logger.info("Shipped", toyId=toy.id)


@step(name="CountToys", triggers=[cron("0 * * * *")])
def count(_: None, ctx: Context) -> None:
    ctx.state.set("toy-stats", "count", {"toys": len(ctx.state.list("toys"))})


@step(name="AuditToys", triggers=[state("toys", filter={"stage": "shipped"})])
def audit(change: StateChange, ctx: Context) -> None:
    ctx.state.set("toy-audit", change.key, change.event)


@step(name="RankToy", triggers=[queue("toy.rank", input=ToyId)])
def rank(toy: ToyId, ctx: Context) -> None:
    with ctx.state.transaction():
        order = ctx.state.get("toy-rank", "order") or {"ids": []}
        ctx.state.set("toy-rank", "order", {"ids": [*order["ids"], toy.id]})


@step(name="EchoToy", triggers=[queue("toy.echo", input=ToyId)])
def echo(toy: ToyId, ctx: Context) -> None:
    ctx.state.set("toy-echo", toy.id, True)


@step(name="MarkToy", triggers=[queue("toy.mark", input=ToyId)])
async def mark(toy: ToyId, ctx: AsyncContext) -> None:
    # A write on an event loop: its state trigger is published off the loop, after the handler returns.
    await ctx.state.set("toys", toy.id, {"stage": "shipped", "attempts": 1})
