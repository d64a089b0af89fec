"""What a trace is made of: spans (one per HTTP request, enqueue, attempt of a step run and cron
fire) and the log lines written while a span was current.

A trace is everything one HTTP request, one cron fire or one replay causes; every span of it
carries its ``trace_id`` (32 hex digits, also a valid W3C trace id). A span's parent is the span
that caused it: an enqueue's parent is the request, run or cron fire that enqueued; a run's
parent is the enqueue that sent its message, so every attempt of one message is a sibling
under that enqueue, each its own bar.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

#: What a span stands for.
Kind = Literal["http", "enqueue", "run", "cron"]
#: How a span ended. ``error``: the attempt raised and will be retried; ``dead``: it raised and
#: the message failed for good; ``skipped``: a run whose trigger's condition was false.
Status = Literal["ok", "error", "dead", "skipped"]
#: Where an enqueue came from.
Source = Literal["http", "step", "state", "cron", "replay", "dead-letter", "outside"]

KINDS: tuple[str, ...] = ("http", "enqueue", "run", "cron")
STATUSES: tuple[str, ...] = ("ok", "error", "dead", "skipped")
SOURCES: tuple[str, ...] = ("http", "step", "state", "cron", "replay", "dead-letter", "outside")

#: A payload is kept as a preview of at most this many characters (its full size is recorded).
PAYLOAD_PREVIEW = 2048
#: A traceback is cut to its last this many characters.
TRACEBACK_LIMIT = 8192
#: A log line's text is cut to this many characters.
LOG_LIMIT = 4096
#: An error message is cut to this many characters.
ERROR_LIMIT = 1024


def new_trace_id() -> str:
    """A fresh trace id: 32 hex digits, a valid W3C trace id, that sorts by the time it was made.

    The first 12 digits are the milliseconds since the epoch, the other 20 random: every index
    keyed by trace id (the trace store has several) then grows at its end instead of at random
    places, which halves what a span costs to write once the store holds a few hundred
    thousand of them.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def new_message_id() -> str:
    """A fresh message id: a UUID (version 7's layout: milliseconds since the epoch, then random
    bits) that sorts by time, for the same reason as :func:`new_trace_id`: the trace store
    indexes spans by message id too."""
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | random.getrandbits(12) << 64
    value |= 0b10 << 62 | random.getrandbits(62)
    return str(uuid.UUID(int=value))


def new_span_id() -> str:
    """A fresh span id: 16 hex digits, never all zeros, as W3C trace context wants.

    From ``random`` (reseeded in every forked process), not the OS: an id needs to be unique,
    not secret, and this is on every message's path.
    """
    return f"{random.getrandbits(64) or 1:016x}"


@dataclass(slots=True)
class SpanEvent:
    """Something that happened to a span: ``retry_scheduled``, ``dead_lettered``, ``replayed``..."""

    name: str
    at: float
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "at": self.at, **({"attrs": self.attrs} if self.attrs else {})}


@dataclass(slots=True)
class Span:
    """One unit of work in a trace.

    Attributes:
      trace_id: the trace (32 hex digits, or the id a client sent, up to 64 characters).
      span_id: this span (16 hex digits).
      parent_id: the span that caused this one; ``None`` for a trace's first span.
      kind: ``http``, ``enqueue``, ``run`` or ``cron``.
      name: what it shows as: ``POST /orders``, ``send <queue>``, ``process <queue>``, ``cron <Step>``.
      started_at: when it started, in seconds since the epoch.
      duration_ms: how long it took (for a run: the handler's time, without the wait in the queue).
      status: ``ok``, ``error``, ``dead`` or ``skipped``.
      step: the step it ran, or the step an enqueue sent to.
      flow: that step's first flow.
      message_id: the Dramatiq message enqueued or run.
      attempt: a run's attempt number, 1 for the first delivery.
      queue_delay_ms: a run's wait between being enqueued (or due, for a delayed message) and starting.
      error_type, error, traceback: what an ``error`` or ``dead`` span raised (cut to bounded sizes).
      attrs: the rest, by kind: ``route``, ``method``, ``http_status``; ``topic``, ``source``,
        ``delay_ms``, ``priority``, ``queue``; ``scheduled_at``; ``payload`` (a preview) and
        ``payload_size`` (characters of its JSON).
      events: :class:`SpanEvent` s, in order.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    name: str
    started_at: float
    duration_ms: float = 0.0
    status: str = "ok"
    step: str | None = None
    flow: str | None = None
    message_id: str | None = None
    attempt: int | None = None
    queue_delay_ms: float | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)

    @property
    def ended_at(self) -> float:
        return self.started_at + self.duration_ms / 1000

    @property
    def failed(self) -> bool:
        return self.status in ("error", "dead")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the console's API and ``python -m actors trace --json`` show)."""
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentId": self.parent_id,
            "kind": self.kind,
            "name": self.name,
            "startedAt": self.started_at,
            "durationMs": self.duration_ms,
            "status": self.status,
            "step": self.step,
            "flow": self.flow,
            "messageId": self.message_id,
            "attempt": self.attempt,
            "queueDelayMs": self.queue_delay_ms,
            "errorType": self.error_type,
            "error": self.error,
            "traceback": self.traceback,
            "attrs": self.attrs,
            "events": [event.to_json() for event in self.events],
        }


@dataclass(slots=True)
class LogLine:
    """A log line written while a span was current, kept with its trace.

    ``at`` is seconds since the epoch; ``level`` a name (``INFO``); ``message`` the line's text
    without the fields a step logger appends; ``fields`` those fields.
    """

    trace_id: str
    span_id: str | None
    at: float
    level: str
    logger: str
    message: str
    step: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "at": self.at,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "step": self.step,
            "fields": self.fields,
        }


def preview(value: Any, limit: int = PAYLOAD_PREVIEW) -> tuple[str, int]:
    """``value`` as JSON cut to ``limit`` characters, and the full JSON's length.

    A multi-megabyte payload is serialised once, here, off the handler's path (the recorder's
    caller passes the value it already has); a page only ever gets the preview.
    """
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return (text if len(text) <= limit else text[:limit] + "…"), len(text)


def cut(text: str | None, limit: int, *, keep: Literal["head", "tail"] = "head") -> str | None:
    """``text`` cut to ``limit`` characters (its start, or its end for a traceback)."""
    if text is None or len(text) <= limit:
        return text
    if keep == "tail":
        return "…" + text[-limit:]
    return text[:limit] + "…"
