"""Run one step's handler with a test context: no broker, no gateway process, no other step."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from ..context import AnyContext, AsyncContext, Context
from ..declare.state_changes import StateChange
from ..declare.steps import Step, declared_step
from ..errors import PublishError, StepDeclarationError
from ..gateway.errors import http_exception
from ..gateway.middleware import GatewayMiddleware
from ..gateway.routing import path_route, step_endpoint
from ..messaging.priorities import resolve_priority
from ..store import AsyncStateStore, SqliteStateStore, StateStore
from ..worker.actors import handler_input
from ..worker.middleware import ConditionNotMet
from .records import Enqueue, LogCapture, LogLine, Refusals, capturing_logs


@dataclass(frozen=True)
class StepRun:
    """What one run of a queue-, state- or cron-triggered handler did.

    ``skipped`` is true when the trigger's condition was false (the handler did not run).
    """

    result: Any
    skipped: bool
    enqueued: list[Enqueue] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)

    def enqueued_to(self, topic: str) -> list[Any]:
        """The data of every message this run enqueued to ``topic``."""
        return [e.data for e in self.enqueued if e.topic == topic]


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP step answered, as the gateway sends it: status, JSON body (or ``None``), headers."""

    status: int
    body: Any
    headers: dict[str, str]
    enqueued: list[Enqueue] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)

    def enqueued_to(self, topic: str) -> list[Any]:
        """The data of every message this request enqueued to ``topic``."""
        return [e.data for e in self.enqueued if e.topic == topic]


class RecordingPublisher:
    """A :class:`~conveyor.messaging.publisher.Publisher` that keeps what it is given instead of sending it.

    It checks what sending would check: the priority, and that the data is JSON.
    """

    def __init__(self, max_priority: int = 10) -> None:
        self.max_priority = max_priority
        self.enqueued: list[Enqueue] = []
        #: The topics that refuse enqueues for now (StepEnvironment.refusing).
        self.refusals = Refusals()

    def enqueue(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> concurrent.futures.Future[list[str]]:
        if priority is not None:
            resolve_priority(priority, self.max_priority)
        if self.refusals.take(topic):
            raise PublishError(f"RabbitMQ did not take the message (topic {topic!r}): the test refuses it")
        message_id = uuid.uuid4().hex
        self.enqueued.append(Enqueue(topic, _as_json(data), delay, priority, trace_id, message_id))
        done: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
        done.set_result([message_id])
        return done


class StepEnvironment:
    """One step at a time, with a real state store and a context that records what the step enqueues.

    The handler runs as on a worker or in the gateway: its input is validated against the
    trigger's schema (:class:`~conveyor.errors.InvalidInput` as in production), its condition
    is checked, an enqueue to a topic it does not declare raises
    :class:`~conveyor.errors.UndeclaredTopicError`, and an HTTP step's request and answer go
    through the gateway's own parsing and response shaping::

        from conveyor.testing import StepEnvironment
        from flows.orders import process_order

        def test_an_order_is_completed_and_notified():
            with StepEnvironment() as env:
                env.state.set("orders", "o-1", {"orderId": "o-1", "status": "pending"})
                run = env.run(process_order.handler, {"orderId": "o-1", ...}, attempt=2)
                assert env.state.get("orders", "o-1")["status"] == "completed"
                assert run.enqueued_to("send-notification")[0]["status"] == "completed"

    Parameters:
      state: the state store to use; a new one in a temp dir by default (removed on close).
      max_priority: ``[broker] max_priority``, for checking enqueued priorities.
      log_level: the level from which log lines are kept.
    """

    def __init__(self, *, state: StateStore | None = None, max_priority: int = 10, log_level: str = "DEBUG") -> None:
        self._dir: Path | None = None
        if state is None:
            self._dir = Path(tempfile.mkdtemp(prefix="conveyor-step-"))
            state = SqliteStateStore(self._dir / "state.db")
        self.state = state
        #: ``self.state``, awaited: what ``async def`` handlers get as ``ctx.state``.
        self.async_state = AsyncStateStore(state)
        self.publisher = RecordingPublisher(max_priority)
        self.log_level = log_level
        self._logs = LogCapture()

    @contextmanager
    def refusing(self, topic: str, *, times: int | None = None) -> Iterator[None]:
        """While inside, an enqueue to ``topic`` raises :class:`~conveyor.errors.PublishError`, as
        one RabbitMQ does not confirm does (an HTTP step then answers 503). ``times`` refuses only that many."""
        with self.publisher.refusals.refusing(topic, times):
            yield

    @property
    def enqueued(self) -> list[Enqueue]:
        """Every enqueue of every run so far, in order."""
        return list(self.publisher.enqueued)

    @property
    def logs(self) -> list[LogLine]:
        """Every log line of every run so far, in order."""
        return list(self._logs.lines)

    def context(
        self, step: Step, *, trace_id: str | None = None, attempt: int | None = None, topic: str | None = None
    ) -> AnyContext:
        """The ``ctx`` a run of ``step`` gets (a new message id each time); async handlers get an AsyncContext."""
        where: dict[str, Any] = {
            "publisher": self.publisher,
            "trace_id": trace_id or uuid.uuid4().hex,
            "message_id": uuid.uuid4().hex if step.runs_on_workers else None,
            "attempt": attempt,
            "topic": topic,
        }
        if step.is_async:
            return AsyncContext(step, state=self.async_state, **where)
        return Context(step, state=self.state, **where)

    # -- queue, state and cron steps -------------------------------------------------------

    def run(
        self,
        handler: Callable[..., Any],
        data: Any = None,
        *,
        attempt: int = 1,
        topic: str | None = None,
        trace_id: str | None = None,
    ) -> StepRun:
        """Run a queue-, state- or cron-triggered step's handler on ``data``, as a worker would.

        ``data`` is what the message carries (a dict or a pydantic model; a
        :class:`~conveyor.StateChange` for a state trigger; nothing for cron). ``topic`` picks
        the queue trigger when the step has several. ``attempt`` is what ``ctx.attempt`` says
        (2 for the first retry). An ``async def`` handler runs on an event loop of its own;
        from inside a running loop, use :meth:`run_async`.
        """
        step = _step_of(handler)
        if step.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.run_async(handler, data, attempt=attempt, topic=topic, trace_id=trace_id))
            raise RuntimeError(f"step {step.name!r} is async and an event loop is running: await env.run_async(...)")
        prepared = self._prepare(step, data, attempt, topic, trace_id)
        if prepared is None:
            return StepRun(None, True)
        value, ctx = prepared
        before = self._marks()
        with capturing_logs(self._logs, self.log_level):
            result = step.handler(value, ctx)
            ctx.settle_sync()
        enqueued, logs = self._since(before)
        return StepRun(result, False, enqueued, logs)

    async def run_async(
        self,
        handler: Callable[..., Any],
        data: Any = None,
        *,
        attempt: int = 1,
        topic: str | None = None,
        trace_id: str | None = None,
    ) -> StepRun:
        """:meth:`run` from an event loop (a ``def`` handler runs in a thread)."""
        step = _step_of(handler)
        prepared = self._prepare(step, data, attempt, topic, trace_id)
        if prepared is None:
            return StepRun(None, True)
        value, ctx = prepared
        before = self._marks()
        with capturing_logs(self._logs, self.log_level):
            if step.is_async:
                result = await step.handler(value, ctx)
            else:
                result = await asyncio.to_thread(step.handler, value, ctx)
            await ctx.settle()
        enqueued, logs = self._since(before)
        return StepRun(result, False, enqueued, logs)

    def _prepare(
        self, step: Step, data: Any, attempt: int, topic: str | None, trace_id: str | None
    ) -> tuple[Any, AnyContext] | None:
        options = _message_options(step, data, topic)
        ctx = self.context(step, trace_id=trace_id, attempt=attempt, topic=options.get("topic"))
        try:
            return handler_input(step, options, _as_json(data), ctx), ctx
        except ConditionNotMet:
            return None

    # -- HTTP steps ------------------------------------------------------------------------

    def request(
        self,
        handler: Callable[..., Any],
        *,
        json: Any = None,
        content: bytes | str | None = None,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        raise_errors: bool = True,
    ) -> HttpAnswer:
        """Send an HTTP step the request its trigger takes, through the gateway's request handling.

        ``json`` is the body (or ``content``, raw); ``path_params`` fill the trigger's path
        (``{"orderId": "o-1"}`` for ``/orders/{orderId}``); ``params`` is the query string.
        ``method`` picks the trigger when the step has several. Bad input gets the same 4xx
        JSON answer the gateway gives. A handler that raises is a 500 to the client; here its
        exception is raised, unless ``raise_errors=False`` (then ``answer.logs`` holds it).
        """
        step = _step_of(handler)
        triggers = [t for t in step.http_triggers if method is None or t.method == method.upper()]
        if not triggers:
            raise StepDeclarationError(
                f"step {step.name!r} has no HTTP trigger{f' for {method}' if method else ''}; "
                f"its triggers: {', '.join(t.kind for t in step.triggers)} (run it with env.run)"
            )
        trigger = triggers[0]
        try:
            path = trigger.path.format(**(path_params or {}))
        except KeyError as exc:
            raise ValueError(f"path {trigger.path!r} needs path_params[{exc.args[0]!r}]") from None
        app = Starlette(
            routes=[path_route(trigger.path, {trigger.method: step_endpoint(self._http_context, step, trigger)})],
            middleware=[Middleware(GatewayMiddleware)],
            exception_handlers={HTTPException: http_exception},
        )
        before = self._marks()
        with capturing_logs(self._logs, self.log_level), TestClient(app, raise_server_exceptions=True) as client:
            response = client.request(
                trigger.method, path, json=json, content=content, params=params, headers=dict(headers or {})
            )
        body = response.json() if response.content and "json" in response.headers.get("content-type", "") else None
        enqueued, logs = self._since(before)
        answer = HttpAnswer(response.status_code, body, dict(response.headers), enqueued, logs)
        crash = next((line.error for line in answer.logs if line.error is not None), None)
        if raise_errors and response.status_code == 500 and crash is not None:
            raise crash
        return answer

    def _http_context(self, step: Step, *, trace_id: str) -> AnyContext:
        return self.context(step, trace_id=trace_id)

    # -- life cycle ------------------------------------------------------------------------

    def _marks(self) -> tuple[int, int]:
        return len(self.publisher.enqueued), len(self._logs.lines)

    def _since(self, before: tuple[int, int]) -> tuple[list[Enqueue], list[LogLine]]:
        enqueued, logs = before
        return self.publisher.enqueued[enqueued:], self._logs.lines[logs:]

    def close(self) -> None:
        """Stop the async state threads; remove the temp dir of the state store this environment made."""
        self.async_state.close()
        if self._dir is not None:
            self.state.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> StepEnvironment:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _step_of(handler: Callable[..., Any]) -> Step:
    step = declared_step(handler)
    if step is None:
        raise StepDeclarationError(f"{handler!r} is not a step: decorate it with @step(...)")
    return step


def _message_options(step: Step, data: Any, topic: str | None) -> dict[str, Any]:
    """The options a message with ``data`` to ``step`` would carry: the topic, or the state group, or neither (cron)."""
    if topic is not None:
        if step.queue_trigger_for(topic) is None:
            topics = [t.topic for t in step.queue_triggers]
            raise StepDeclarationError(f"step {step.name!r} has no queue trigger for {topic!r}; its topics: {topics}")
        return {"topic": topic}
    if isinstance(data, StateChange) or (step.state_triggers and not step.queue_triggers):
        change = data if isinstance(data, StateChange) else StateChange.model_validate(data)
        return {"state_group": change.group}
    if len(step.queue_triggers) == 1:
        return {"topic": step.queue_triggers[0].topic}
    if step.queue_triggers:
        topics = [t.topic for t in step.queue_triggers]
        raise StepDeclarationError(f"step {step.name!r} listens to several topics {topics}: pass topic=...")
    if step.cron_triggers:
        return {}
    raise StepDeclarationError(f"step {step.name!r} is an HTTP step: send it a request with env.request(...)")


def _as_json(data: Any) -> Any:
    """``data`` as it arrives after a trip through a message: JSON in, JSON out."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return json.loads(json.dumps(data))
