"""Steps as actors on Dramatiq's StubBroker: validation, fan-out, retries, dead letters, ctx."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from conveyor import AsyncContext, Context, Registry, UndeclaredTopicError, queue, step
from tests.helpers import drain, memory_runtime, payloads, running_worker


class Item(BaseModel):
    id: str
    n: int = 1


@pytest.fixture
def registry():
    return Registry()


def test_handler_gets_validated_input_and_context(tmp_path, registry):
    seen = []

    @step(name="Handle", triggers=[queue("items", input=Item)], registry=registry)
    def handle(item: Item, ctx: Context) -> None:
        seen.append((item, ctx.topic, ctx.attempt, ctx.message_id, ctx.trace_id))

    runtime = memory_runtime(tmp_path, registry)
    [message_id] = runtime.publisher.publish("items", {"id": "a", "n": "2"}, trace_id="trace-1")
    with running_worker(runtime):
        drain(runtime, "Handle")
    assert seen == [(Item(id="a", n=2), "items", 1, message_id, "trace-1")]


def test_fan_out_gives_each_subscriber_its_own_queue_and_copy(tmp_path, registry):
    for name in ("First", "Second"):
        step(name=name, triggers=[queue("shared", input=Item)], registry=registry)(lambda i, c: None)
    runtime = memory_runtime(tmp_path, registry)
    runtime.publisher.publish("shared", {"id": "x"})
    assert payloads(runtime, "First") == [{"id": "x"}]
    assert payloads(runtime, "Second") == [{"id": "x"}]


def test_enqueue_to_an_undeclared_topic_is_a_clear_error(tmp_path, registry):
    errors = []

    @step(name="Sender", triggers=[queue("in")], enqueues=["out"], registry=registry)
    def sender(data, ctx: Context) -> None:
        try:
            ctx.enqueue("elsewhere", {})
        except UndeclaredTopicError as exc:
            errors.append(str(exc))

    step(name="Out", triggers=[queue("out")], registry=registry)(lambda d, c: None)
    runtime = memory_runtime(tmp_path, registry)
    runtime.publisher.publish("in", {})
    with running_worker(runtime):
        drain(runtime)
    assert errors == [
        "step 'Sender' enqueued to topic 'elsewhere', which it does not declare; "
        "add 'elsewhere' to its enqueues=[...] (declared: ['out'])"
    ]


def test_async_handler_enqueues_and_chains(tmp_path, registry):
    @step(name="Start", triggers=[queue("start", input=Item)], enqueues=["next"], registry=registry)
    async def start(item: Item, ctx: AsyncContext) -> None:
        await ctx.enqueue("next", Item(id=item.id, n=item.n + 1))

    @step(name="Next", triggers=[queue("next", input=Item)], registry=registry)
    def finish(item: Item, ctx: Context) -> None:
        ctx.state.set("done", item.id, item.n)

    runtime = memory_runtime(tmp_path, registry)
    runtime.publisher.publish("start", {"id": "k", "n": 1})
    with running_worker(runtime):
        drain(runtime, "Start", "Next")
    assert runtime.state.get("done", "k") == 2


def test_failures_are_retried_then_dead_lettered_with_the_error(tmp_path, registry):
    attempts = []

    @step(name="Flaky", triggers=[queue("flaky", input=Item)], registry=registry)
    def flaky(item: Item, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"cannot handle {item.id}")

    @step(name="Graveyard", triggers=[queue("flaky.dead")], registry=registry)
    def graveyard(record, ctx: Context) -> None:
        ctx.state.set("dead", record["id"], record)

    runtime = memory_runtime(
        tmp_path,
        registry,
        '[steps.Flaky]\nmax_retries = 2\nbackoff = "fixed"\nretry_delay = 10\ndead_letter_queue = "flaky.dead"\n',
    )
    [message_id] = runtime.publisher.publish("flaky", {"id": "z"})
    with running_worker(runtime):
        drain(runtime, "Flaky", "Graveyard")
    assert attempts == [1, 2, 3]
    record = runtime.state.get("dead", "z")
    assert record["error"] == "ValueError: cannot handle z"
    assert record["deadLetter"] == {
        "step": "Flaky",
        "topic": "flaky",
        "messageId": message_id,
        "attempts": 3,
        "traceback": "ValueError: cannot handle z",
        "data": {"id": "z"},
    }


def test_invalid_input_never_reaches_the_handler_and_is_not_retried(tmp_path, registry):
    calls = []
    step(name="Strict", triggers=[queue("strict", input=Item)], registry=registry, max_retries=5)(
        lambda i, c: calls.append(i)
    )

    @step(name="Rejects", triggers=[queue("strict.dead")], registry=registry)
    def rejects(record, ctx: Context) -> None:
        ctx.state.set("rejected", record["deadLetter"]["messageId"], record)

    runtime = memory_runtime(tmp_path, registry, '[steps.Strict]\ndead_letter_queue = "strict.dead"\n')
    [message_id] = runtime.publisher.publish("strict", {"id": 3})
    with running_worker(runtime):
        drain(runtime, "Strict", "Rejects")
    assert calls == []
    record = runtime.state.get("rejected", message_id)
    assert record["deadLetter"]["attempts"] == 1
    assert record["error"] == (
        "InvalidInput: input for step 'Strict' failed its schema: id: Input should be a valid string"
    )


def test_mistakes_in_step_code_are_not_retried(tmp_path, registry):
    attempts = []

    @step(name="Buggy", triggers=[queue("buggy")], registry=registry, max_retries=5)
    def buggy(data, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        ctx.state.update("g", "k", [{"type": "explode"}])

    runtime = memory_runtime(tmp_path, registry)
    runtime.publisher.publish("buggy", {})
    with running_worker(runtime):
        drain(runtime, "Buggy")
    assert attempts == [1]
    assert len(runtime.broker.dead_letters) == 1
