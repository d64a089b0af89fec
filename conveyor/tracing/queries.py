"""What can be asked of a trace store: filters and pages, and the shapes of the answers.

The console, ``python -m actors traces`` and ``python -m actors trace`` all ask through these,
so a filter means the same everywhere and is applied by the store (server side), never by a page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .spans import LogLine, Span

#: A trace's status: ``failed`` if a message was dead-lettered or a request answered 5xx,
#: ``retried`` if an attempt failed but none for good, else ``ok``.
TraceStatus = Literal["ok", "retried", "failed"]
TRACE_STATUSES: tuple[str, ...] = ("ok", "retried", "failed")

#: The most rows one page may hold, and the deepest page that may be asked for.
MAX_PER_PAGE = 200
MAX_PAGE = 10_000


@dataclass(frozen=True)
class TraceQuery:
    """Which traces to list. Every field narrows the list; ``None`` leaves it open.

    ``since``/``until`` are seconds since the epoch and bound the trace's start. ``text`` is a
    substring of a span's payload preview, error or name. ``message_id`` finds the trace that
    holds that message. ``page`` counts from 1; traces come newest first.
    """

    status: str | None = None
    flow: str | None = None
    step: str | None = None
    since: float | None = None
    until: float | None = None
    min_duration_ms: float | None = None
    trace_id: str | None = None
    message_id: str | None = None
    text: str | None = None
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class LogQuery:
    """Which log lines to list, newest first. ``level`` is the lowest level shown (``WARNING``
    shows warnings and errors); ``text`` a substring of the line."""

    level: str | None = None
    step: str | None = None
    trace_id: str | None = None
    text: str | None = None
    since: float | None = None
    until: float | None = None
    page: int = 1
    per_page: int = 100


@dataclass(frozen=True)
class TraceSummary:
    """One row of the trace list."""

    trace_id: str
    name: str
    started_at: float
    ended_at: float
    spans: int
    errors: int
    status: str
    steps: list[str] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.ended_at - self.started_at) * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id,
            "name": self.name,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "durationMs": self.duration_ms,
            "spans": self.spans,
            "errors": self.errors,
            "status": self.status,
            "steps": self.steps,
            "flows": self.flows,
        }


@dataclass(frozen=True)
class TracePage:
    """A page of the trace list; ``total`` counts every trace the query matches."""

    traces: list[TraceSummary]
    total: int
    page: int
    per_page: int

    def to_json(self) -> dict[str, Any]:
        return {
            "traces": [t.to_json() for t in self.traces],
            "total": self.total,
            "page": self.page,
            "perPage": self.per_page,
        }


@dataclass(frozen=True)
class TraceDetail:
    """A whole trace: its summary, every span (by start time) and every log line (by time)."""

    summary: TraceSummary
    spans: list[Span]
    logs: list[LogLine]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary.to_json(),
            "spanList": [s.to_json() for s in self.spans],
            "logs": [line.to_json() for line in self.logs],
        }


@dataclass(frozen=True)
class StepCounts:
    """What a step did since some time, from its run spans (the flow diagram's live counts)."""

    runs: int = 0
    ok: int = 0
    errors: int = 0
    dead: int = 0
    skipped: int = 0

    def to_json(self) -> dict[str, int]:
        return {"runs": self.runs, "ok": self.ok, "errors": self.errors, "dead": self.dead, "skipped": self.skipped}


class TraceStore(Protocol):
    """Where spans and their log lines are kept, and how they are read back.

    Writers call :meth:`write` from the recorder's thread only, with batches; readers (the
    console, the CLI) call the rest from any thread.
    """

    def write(self, spans: list[Span], logs: list[LogLine]) -> None:
        """Keep ``spans`` and ``logs`` (one transaction); a span id written again replaces the old row."""
        ...

    def traces(self, query: TraceQuery) -> TracePage:
        """The traces matching ``query``, newest first, one page of them."""
        ...

    def trace(self, trace_id: str) -> TraceDetail | None:
        """One trace in full, or ``None`` if the store holds none of its spans."""
        ...

    def spans_of_message(self, message_id: str) -> list[Span]:
        """The spans (enqueue and every run) of one message, by start time."""
        ...

    def logs(self, query: LogQuery) -> list[LogLine]:
        """Log lines matching ``query``, newest first."""
        ...

    def step_counts(self, since: float) -> dict[str, StepCounts]:
        """Runs per step since ``since``, by outcome."""
        ...

    def cron_fires(self, step: str, limit: int = 10) -> list[Span]:
        """The last ``limit`` cron spans of ``step``, newest first."""
        ...

    def prune(self, *, now: float, ok_age: float, failed_age: float, max_traces: int) -> int:
        """Forget traces that ended more than ``ok_age`` seconds ago (``failed_age`` for a
        ``failed`` trace), then the oldest beyond ``max_traces``; returns how many went."""
        ...

    def close(self) -> None:
        """Let go of connections."""
        ...
