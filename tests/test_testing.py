"""conveyor.testing: one step with a test context, and whole flows in process."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import BaseModel

from conveyor import (
    AsyncContext,
    Context,
    ConveyorError,
    InvalidInput,
    PublishError,
    Registry,
    Request,
    StateChange,
    StepDeclarationError,
    UndeclaredTopicError,
    cron,
    http,
    queue,
    state,
    step,
)
from conveyor.testing import FlowEnvironment, StepEnvironment

# -- steps of a small flow, declared in this module (a flow package of their own is below) --


class Item(BaseModel):
    id: str
    amount: int = 0


@step(name="Accept", triggers=[http("POST", "/items", body=Item)], enqueues=["item.accepted"])
async def accept(request: Request, ctx: AsyncContext) -> dict[str, object]:
    item: Item = request.body
    await ctx.state.set("items", item.id, item.model_dump())
    await ctx.enqueue("item.accepted", item, priority="high")
    ctx.logger.info("Accepted", itemId=item.id)
    return {"status": 202, "body": {"id": item.id}}


@step(
    name="Handle",
    triggers=[queue("item.accepted", input=Item, condition=lambda item, ctx: item.amount >= 0)],
    enqueues=["item.done"],
)
def handle(item: Item, ctx: Context) -> str:
    ctx.enqueue("item.done", {"id": item.id, "attempt": ctx.attempt}, delay=30)
    return f"handled {item.id}"


@step(name="Sneaky", triggers=[queue("sneak")], enqueues=["item.done"])
def sneaky(data: dict[str, object], ctx: Context) -> None:
    ctx.enqueue("not-declared", data)


@step(name="Audit", triggers=[state("items", filter={"amount": 7})])
def audit(change: StateChange, ctx: Context) -> None:
    ctx.state.set("audit", change.key, change.event)


@step(name="Tick", triggers=[cron("* * * * *")])
def tick(_: None, ctx: Context) -> None:
    ctx.state.update("ticks", "n", [{"type": "increment", "path": "n"}])


# -- one step ------------------------------------------------------------------------------


def test_a_queue_step_runs_with_its_schema_and_records_its_enqueues():
    with StepEnvironment() as env:
        run = env.run(handle, {"id": "a", "amount": 2}, attempt=3)
        assert run.result == "handled a" and not run.skipped
        [sent] = run.enqueued
        assert (sent.topic, sent.data, sent.delay) == ("item.done", {"id": "a", "attempt": 3}, 30)
        assert env.enqueued == run.enqueued


def test_a_false_condition_skips_the_handler():
    with StepEnvironment() as env:
        run = env.run(handle, {"id": "a", "amount": -1})
        assert run.skipped and run.enqueued == []


def test_invalid_input_and_undeclared_topics_fail_as_in_production():
    with StepEnvironment() as env:
        with pytest.raises(InvalidInput, match="amount"):
            env.run(handle, {"id": "a", "amount": "lots"})
        with pytest.raises(UndeclaredTopicError, match="not-declared"):
            env.run(sneaky, {"x": 1})


def test_an_http_step_goes_through_the_gateways_parsing_and_answers():
    with StepEnvironment() as env:
        answer = env.request(accept, json={"id": "h1", "amount": 5})
        assert (answer.status, answer.body) == (202, {"id": "h1"})
        assert answer.enqueued_to("item.accepted") == [{"id": "h1", "amount": 5}]
        assert answer.enqueued[0].priority == "high"
        assert env.state.get("items", "h1") == {"id": "h1", "amount": 5}
        assert [(line.message, line.fields["itemId"]) for line in answer.logs] == [("Accepted", "h1")]

        refused = env.request(accept, json={"amount": "x"})
        assert refused.status == 400
        assert {f["field"] for f in refused.body["fields"]} == {"id", "amount"}
        assert env.request(accept, content=b"{", headers={"content-type": "application/json"}).status == 400


def test_a_step_that_is_not_a_step_or_asked_the_wrong_way_is_named():
    with StepEnvironment() as env:
        with pytest.raises(StepDeclarationError, match="not a step"):
            env.run(lambda data, ctx: None)
        with pytest.raises(StepDeclarationError, match="HTTP step"):
            env.run(accept, {"id": "x"})
        with pytest.raises(StepDeclarationError, match="no HTTP trigger"):
            env.request(handle)


def test_state_and_cron_steps_run_too():
    with StepEnvironment() as env:
        change = StateChange(group="items", key="k", event="created", value={"amount": 7})
        env.run(audit, change)
        env.run(tick)
        env.run(tick)
        assert env.state.get("audit", "k") == "created"
        assert env.state.get("ticks", "n") == {"n": 2}


def test_an_async_step_can_be_awaited_from_a_running_loop():
    async def main() -> None:
        with StepEnvironment() as env:
            run = await env.run_async(handle, {"id": "b"})
            assert run.enqueued_to("item.done") == [{"id": "b", "attempt": 1}]

    asyncio.run(main())


def test_a_bad_priority_is_refused_as_the_broker_would():
    registry = Registry()

    @step(name="Loud", triggers=[queue("x")], enqueues=["y"], registry=registry)
    def loud(data: object, ctx: Context) -> None:
        ctx.enqueue("y", {}, priority="urgent")

    with StepEnvironment() as env, pytest.raises(ConveyorError, match="urgent"):
        env.run(loud, {})


# -- whole flows ---------------------------------------------------------------------------

FLOW = "tests.toy_flow"


def test_an_http_request_runs_through_every_step_without_waiting_for_delays():
    started = time.monotonic()
    with FlowEnvironment(FLOW) as flow:
        response = flow.http.post("/toys", json={"id": "t1", "fails": 0})
        assert response.status_code == 202
        flow.join()
        assert flow.state.get("toys", "t1") == {"stage": "shipped", "attempts": 1}
        assert flow.skipped_time > 59  # the shipping step was delayed by a minute (less the real time that passed)
        assert [m.step for m in flow.sent] == ["PackToy", "ShipToy", "AuditToys"]  # shipped: the audit trigger fires
    assert time.monotonic() - started < 5


def test_retries_back_off_on_the_clock_then_dead_letter_to_the_flows_handler():
    with FlowEnvironment(FLOW, settings="[steps.PackToy]\nmax_retries = 2\nretry_delay = 10000") as flow:
        flow.http.post("/toys", json={"id": "t2", "fails": 99})
        flow.join()  # PackToy has a dead_letter_queue topic: its failure is part of the flow
        assert flow.state.get("toys", "t2") == {"stage": "lost", "attempts": 3}
        [dead] = flow.dead_letters_of("PackToy")
        assert dead.attempts == 3 and dead.error == "RuntimeError: box jammed on attempt 3"
        assert flow.skipped_time > 29  # 10 s, then 20 s of backoff


def test_a_failure_nothing_handles_is_raised_by_join():
    with FlowEnvironment(FLOW) as flow:
        flow.publish("toy.ship", {"id": "broken"})
        with pytest.raises(KeyError, match="broken"):
            flow.join()
        assert [d.step for d in flow.dead_letters] == ["ShipToy"]
        flow.publish("toy.ship", {"id": "broken"})
        flow.join(fail_fast=False)
        assert len(flow.dead_letters) == 2


def test_cron_fires_and_state_triggers_run_in_process():
    with FlowEnvironment(FLOW) as flow:
        flow.state.set("toys", "t3", {"stage": "shipped", "attempts": 1})
        flow.fire("CountToys")
        flow.join()
        assert flow.state.get("toy-stats", "count") == {"toys": 1}
        assert flow.state.get("toy-audit", "t3") == "created"
        with pytest.raises(StepDeclarationError, match="no cron trigger"):
            flow.fire("PackToy")


def test_a_high_priority_message_overtakes_a_backlog():
    with FlowEnvironment(FLOW, worker_threads=1, settings="[steps.RankToy]\nconcurrency = 1") as flow:
        with flow.paused():
            for n in range(20):
                flow.publish("toy.rank", {"id": f"low-{n}"}, priority="low")
            flow.publish("toy.rank", {"id": "urgent"}, priority="high")
            flow.publish("toy.rank", {"id": "normal"})
        flow.join()
        order = flow.state.get("toy-rank", "order")["ids"]
        assert order[:2] == ["urgent", "normal"]
        assert order[2:] == [f"low-{n}" for n in range(20)]  # the same priority keeps its order


def test_undeclared_topics_and_invalid_messages_are_refused_as_in_production():
    with FlowEnvironment(FLOW) as flow:
        with pytest.raises(ConveyorError, match="no subscribing step"):
            flow.publish("nobody.listens", {})
        flow.publish("toy.ship", {"wrong": "shape"})
        with pytest.raises(InvalidInput, match="id"):
            flow.join()


def test_real_delays_wait_when_asked():
    with FlowEnvironment(FLOW, real_delays=True) as flow:
        flow.publish("toy.echo", {"id": "e"}, delay=0.3)
        started = time.monotonic()
        flow.join()
        assert time.monotonic() - started >= 0.29
        assert flow.state.get("toy-echo", "e") is True
        assert flow.skipped_time == 0


def test_logs_are_kept_with_their_step_and_fields():
    with FlowEnvironment(FLOW) as flow:
        flow.http.post("/toys", json={"id": "t4", "fails": 0})
        flow.join()
        shipped = [line for line in flow.logs if line.message == "Shipped"]
        assert [(line.step, line.fields["toyId"]) for line in shipped] == [("ShipToy", "t4")]


def test_join_waits_for_state_triggers_an_async_handler_left_to_publish():
    with FlowEnvironment(FLOW) as flow:
        for n in range(20):
            flow.publish("toy.mark", {"id": f"m{n}"})
            flow.join()
            assert flow.state.get("toy-audit", f"m{n}") == "created"


def test_a_refused_publish_is_a_503_for_the_client_and_a_publish_error_for_a_step():
    with FlowEnvironment(FLOW) as flow:
        with flow.refusing("PackToy"):
            assert flow.http.post("/toys", json={"id": "r1"}).status_code == 503
        assert [m.step for m in flow.refused] == ["PackToy"]
        assert flow.http.post("/toys", json={"id": "r2"}).status_code == 202
    with StepEnvironment() as env:
        with env.refusing("item.done", times=1):
            with pytest.raises(PublishError, match="item.done"):
                env.run(handle, {"id": "a"})
            assert env.run(handle, {"id": "b"}).enqueued_to("item.done") == [{"id": "b", "attempt": 1}]
