"""The tracer: makes the spans of HTTP requests, enqueues, step runs and cron fires, and hands them
to the recorder.

The span being worked in is kept in :data:`current_span` (a context variable: it follows a
request into its handler's thread and a worker's message into its ``async def`` handler), so
whatever a span causes, an enqueue or a log line, knows its parent without being told.

Messages carry their trace on: ``trace_id`` and ``span_id`` (the id of the enqueue span that
sent it) are Dramatiq message options. A message that already has a ``span_id`` is a retry or a
staged message being published: it gets no second enqueue span.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

import dramatiq
from dramatiq.common import q_name, xq_name

from .recorder import Recorder
from .spans import ERROR_LIMIT, PAYLOAD_PREVIEW, TRACEBACK_LIMIT, Span, SpanEvent, cut, new_span_id, preview

#: The span whose work is running in this thread or task.
current_span: ContextVar[Span | None] = ContextVar("conveyor_span", default=None)
#: The recorder of the tracer that opened :data:`current_span` (where its log lines go).
current_recorder: ContextVar[Recorder | None] = ContextVar("conveyor_recorder", default=None)
#: Set while the runtime publishes a dead-letter record, so its enqueue says where it came from.
enqueue_source: ContextVar[str | None] = ContextVar("conveyor_enqueue_source", default=None)

P = ParamSpec("P")
R = TypeVar("R")

#: Enqueues started but not yet confirmed, kept at most this many (a failed publish never confirms).
_OPEN_ENQUEUES = 10_000


class Tracer:
    """Makes spans and records them; does nothing at all when it has no recorder.

    Parameters:
      recorder: where finished spans go (``None``: tracing and metrics off).
      flows: each step's first flow, by step name (for the console's flow filter).
    """

    def __init__(self, recorder: Recorder | None, flows: Mapping[str, str | None]) -> None:
        self.recorder = recorder
        self.active = recorder is not None
        self.flows = dict(flows)
        self._sending: dict[str, tuple[Span, float]] = {}
        self._lock = threading.Lock()

    # -- enqueues ------------------------------------------------------------------------------

    def sending(self, message: dramatiq.Message[Any], delay_ms: int | None) -> None:
        """A message is about to be published: open its enqueue span (the broker's ``before_enqueue``)."""
        options = message.options
        if delay_ms is not None:
            # When the message is due, kept in an option of its own: the worker deletes ``eta`` when it moves
            # a delayed message to its queue, and a retry's wait starts then, not at the first enqueue.
            options["due_at"] = options.get("eta") or int(time.time() * 1000) + delay_ms
        if "span_id" in options:
            self._resent(message, delay_ms)
            return
        span = self._enqueue_span(message, delay_ms)
        with self._lock:
            if len(self._sending) >= _OPEN_ENQUEUES:
                self._sending.clear()
            self._sending[message.message_id] = (span, time.perf_counter())

    def sent(self, message: dramatiq.Message[Any]) -> None:
        """RabbitMQ confirmed ``message`` (the broker's ``after_enqueue``): its enqueue span ends."""
        with self._lock:
            opened = self._sending.pop(message.message_id, None)
        if opened is not None and self.recorder is not None:
            span, started = opened
            span.duration_ms = (time.perf_counter() - started) * 1000
            self.recorder.span(span)

    def staged(self, message: dramatiq.Message[Any], delay_ms: int | None = None) -> None:
        """A message was staged to go out after a commit (a cron fire, a keyed request): its enqueue span,
        recorded now, since the process that publishes it may be another."""
        if not self.active or "span_id" in message.options:
            return
        span = self._enqueue_span(message, delay_ms)
        span.attrs["staged"] = True
        if self.recorder is not None:
            self.recorder.span(span)

    def _enqueue_span(self, message: dramatiq.Message[Any], delay_ms: int | None) -> Span:
        options = message.options
        parent = current_span.get()
        source, parent_id = _source(options, parent)
        span_id = new_span_id()
        options["span_id"] = span_id
        options.pop("replay_parent", None)
        step = message.actor_name
        text, size = preview(message.args[0] if message.args else None)
        attrs: dict[str, Any] = {"queue": message.queue_name, "source": source, "payload": text, "payload_size": size}
        if topic := options.get("topic"):
            attrs["topic"] = topic
        if group := options.get("state_group"):
            attrs["state_group"] = group
        if replays := options.get("replayed_from_message"):
            attrs["replays"] = replays
        if delay_ms:
            attrs["delay_ms"] = delay_ms
        if (priority := options.get("priority")) is not None:
            attrs["priority"] = priority
        return Span(
            trace_id=_trace_of(message),
            span_id=span_id,
            parent_id=parent_id,
            kind="enqueue",
            name=f"send {message.queue_name}",
            started_at=time.time(),
            step=step,
            flow=self.flows.get(step),
            message_id=message.message_id,
            attrs=attrs,
        )

    def _resent(self, message: dramatiq.Message[Any], delay_ms: int | None) -> None:
        # A retry: Conveyor's Retries re-enqueues a copy from inside the failed run.
        span = current_span.get()
        if span is not None and span.kind == "run" and span.message_id == message.message_id:
            span.events.append(SpanEvent("retry_scheduled", time.time(), {"delay_ms": delay_ms or 0}))

    # -- runs ----------------------------------------------------------------------------------

    def run_started(self, message: Any) -> Span:
        """A worker took ``message``: its run span (one per attempt), now current."""
        now = time.time()
        message = getattr(message, "_message", message)  # the message behind a worker's proxy
        options = message.options
        due_ms = options.get("eta") or options.get("due_at") or message.message_timestamp
        step, queue = message.actor_name, message.queue_name
        span = Span(
            trace_id=_trace_of(message),
            span_id=new_span_id(),
            parent_id=options.get("span_id"),
            kind="run",
            name=f"process {queue}",
            started_at=now,
            step=step,
            flow=self.flows.get(step),
            message_id=message.message_id,
            attempt=options.get("retries", 0) + 1,
            queue_delay_ms=max(0.0, now * 1000 - due_ms) if due_ms else None,
            attrs={"queue": queue},
        )
        if replays := options.get("replayed_from_message"):
            span.attrs["replays"] = replays  # the dead message this run takes up again: see rows.mends
        if "span_id" not in options:
            # Sent from outside Conveyor's publisher: no enqueue span holds the payload.
            span.attrs["payload"], span.attrs["payload_size"] = preview(message.args[0] if message.args else None)
        current_span.set(span)
        current_recorder.set(self.recorder)
        if self.recorder is not None:
            self.recorder.running(span)
        return span

    def run_ended(self, span: Span, *, exception: BaseException | None, failed: bool, dead_letter: str | None) -> None:
        """The attempt ended: ``ok``, or ``error`` (to be retried), or ``dead`` (failed for good)."""
        ended = time.time()
        current_span.set(None)
        if exception is not None:
            span.status = "dead" if failed else "error"
            describe(span, exception)
            if failed:
                attrs = {"queue": xq_name(q_name(span.attrs.get("queue", "")))}
                if dead_letter:
                    attrs["topic"] = dead_letter
                span.events.append(SpanEvent("dead_lettered", ended, attrs))
        self._finish(span, ended)

    def run_skipped(self, span: Span) -> None:
        """The step's condition was false for the message."""
        ended = time.time()
        current_span.set(None)
        span.status = "skipped"
        span.events.append(SpanEvent("condition_false", ended))
        self._finish(span, ended)

    # -- HTTP requests and cron fires -----------------------------------------------------------

    def http_started(self, trace_id: str, parent_id: str | None, method: str, path: str) -> Span:
        """A request came in: its span, now current (the gateway's tracing middleware)."""
        span = Span(
            trace_id=trace_id,
            span_id=new_span_id(),
            parent_id=parent_id,
            kind="http",
            name=f"{method} {path}",
            started_at=time.time(),
            attrs={"method": method, "path": path},
        )
        current_span.set(span)
        current_recorder.set(self.recorder)
        return span

    def http_ended(self, span: Span, *, status: int, route: str | None, body: bytes, size: int) -> None:
        """The request was answered with ``status``; ``body`` is its first bytes, ``size`` all of them."""
        ended = time.time()
        span.attrs["http_status"] = status
        if route is not None:
            span.attrs["route"] = route
            span.name = f"{span.attrs['method']} {route}"
        if span.step is not None:
            span.flow = self.flows.get(span.step)
        if body:
            text = body.decode("utf-8", "replace")
            span.attrs["payload"] = cut(text, PAYLOAD_PREVIEW)
            span.attrs["payload_size"] = size
        span.status = "error" if status >= 500 else "ok"
        self._finish(span, ended)

    @contextmanager
    def cron_fire(self, step: str, trace_id: str, scheduled_at: float, *, by_hand: bool) -> Iterator[Span]:
        """The span of one cron fire, current inside the block; recorded when the block ends,
        unless the block set its status to ``"lost"`` (another scheduler fired the tick)."""
        span = Span(
            trace_id=trace_id,
            span_id=new_span_id(),
            parent_id=None,
            kind="cron",
            name=f"cron {step}",
            started_at=time.time(),
            step=step,
            flow=self.flows.get(step),
            attrs={"scheduled_at": scheduled_at, "lateness_ms": max(0.0, (time.time() - scheduled_at) * 1000)},
        )
        if by_hand:
            span.attrs["by_hand"] = True
        token = current_span.set(span)
        recorder_token = current_recorder.set(self.recorder)
        try:
            yield span
        except BaseException as exc:
            span.status = "error"
            describe(span, exc)
            raise
        finally:
            current_span.reset(token)
            current_recorder.reset(recorder_token)
            if span.status != "lost":
                self._finish(span, time.time())

    def _finish(self, span: Span, ended: float) -> None:
        """``span`` ended at ``ended``: its duration, then to the recorder."""
        span.duration_ms = (ended - span.started_at) * 1000
        if self.recorder is not None:
            self.recorder.span(span)


def in_current_span(work: Callable[P, R]) -> Callable[P, R]:
    """``work``, to run in another thread as part of the span current here (and its recorder).

    Only the span travels, not the whole context: other context variables (a store's open
    transaction) belong to this thread.
    """
    span, recorder = current_span.get(), current_recorder.get()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        span_token, recorder_token = current_span.set(span), current_recorder.set(recorder)
        try:
            return work(*args, **kwargs)
        finally:
            current_span.reset(span_token)
            current_recorder.reset(recorder_token)

    return run


def describe(span: Span, exception: BaseException) -> None:
    """Put ``exception``'s type, message and traceback (cut to bounded sizes) on ``span``."""
    span.error_type = type(exception).__name__
    span.error = cut(str(exception), ERROR_LIMIT)
    span.traceback = cut("".join(traceback.format_exception(exception)), TRACEBACK_LIMIT, keep="tail")


def _trace_of(message: Any) -> str:
    trace_id = message.options.get("trace_id")
    return trace_id if isinstance(trace_id, str) and trace_id else message.message_id


def _source(options: dict[str, Any], parent: Span | None) -> tuple[str, str | None]:
    """Where an enqueue came from, and its parent span's id."""
    parent_id = parent.span_id if parent is not None else None
    if options.get("replayed_from_message"):
        return "replay", options.get("replay_parent") or parent_id
    if (source := enqueue_source.get()) is not None:
        return source, parent_id
    if options.get("state_group"):
        return "state", parent_id
    if parent is None:
        return "outside", None
    return {"http": "http", "run": "step", "cron": "cron"}.get(parent.kind, "outside"), parent_id
