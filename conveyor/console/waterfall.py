"""A trace as waterfall rows: every span nested under its parent (fan-out side by side), its bar
placed by start and duration relative to the whole trace, a run's queue wait as a bar of its own
before it, and the span's events and log lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import quote

from ..tracing.queries import TraceDetail
from ..tracing.spans import LogLine, Span

#: A trace is polled for new spans while it ended less than this many seconds ago.
LIVE_FOR = 60.0
#: The narrowest bar, in percent of the trace, so an instant span stays visible.
MIN_WIDTH = 0.4
#: A ``running`` span its worker has not written again for this many seconds (it writes one every
#: few: :data:`~conveyor.tracing.recorder.RUNNING_REFRESH`) has lost its worker: killed, or its host gone.
LOST_AFTER = 30.0


@dataclass
class Row:
    span: Span
    depth: int
    offset_ms: float
    left: float
    width: float
    wait_left: float | None = None
    wait_width: float | None = None
    logs: list[LogLine] = field(default_factory=list)
    #: ``(name, ms after the trace started, attrs)`` of each event.
    events: list[tuple[str, float, dict[str, object]]] = field(default_factory=list)
    #: The dead letter's page, for a span whose message was dead-lettered.
    dead_letter: str | None = None
    #: ``status``, or ``lost`` for a run shown as running whose worker stopped writing it.
    shown_status: str = ""


@dataclass
class Waterfall:
    rows: list[Row]
    total_ms: float
    #: Log lines of the trace that belong to no span it holds.
    other_logs: list[LogLine]
    live: bool


def waterfall(detail: TraceDetail, *, base: str, now: float | None = None) -> Waterfall:
    """Rows for ``detail``'s spans in tree order; ``base`` is the console's root for links."""
    spans = detail.spans
    ids = {s.span_id for s in spans}
    start = min([_waited_from(s) for s in spans] or [detail.summary.started_at])
    end = max([s.ended_at for s in spans] + [detail.summary.ended_at, start])
    total = max((end - start) * 1000, 0.001)
    children: dict[str | None, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else None, []).append(s)
    logs: dict[str | None, list[LogLine]] = {}
    for line in detail.logs:
        logs.setdefault(line.span_id if line.span_id in ids else None, []).append(line)
    rows: list[Row] = []
    seen: set[str] = set()
    current = time.time() if now is None else now

    def visit(span: Span, depth: int) -> None:
        if span.span_id in seen:  # a parent loop in bad data: show each span once
            return
        seen.add(span.span_id)
        rows.append(_row(span, depth, start, total, logs.get(span.span_id, []), base, current))
        for child in sorted(children.get(span.span_id, []), key=_order):
            visit(child, depth + 1)

    for root in sorted(children.get(None, []), key=_order):
        visit(root, 0)
    for left_over in spans:  # spans only reachable through a loop
        visit(left_over, 0)
    return Waterfall(rows, total, logs.get(None, []), live=current - detail.summary.ended_at < LIVE_FOR)


def _order(span: Span) -> tuple[float, int]:
    # Siblings by when they began waiting; one message's attempts by attempt number, whatever the clocks say.
    return _waited_from(span), span.attempt or 0


def _waited_from(span: Span) -> float:
    return span.started_at - (span.queue_delay_ms or 0) / 1000


def _row(span: Span, depth: int, start: float, total: float, logs: list[LogLine], base: str, now: float) -> Row:
    offset = (span.started_at - start) * 1000
    row = Row(
        span=span,
        depth=depth,
        offset_ms=offset,
        left=100 * offset / total,
        width=max(100 * span.duration_ms / total, MIN_WIDTH),
        logs=logs,
        events=[(e.name, (e.at - start) * 1000, e.attrs) for e in span.events],
        shown_status="lost" if span.status == "running" and now - span.ended_at > LOST_AFTER else span.status,
    )
    if span.queue_delay_ms:
        row.wait_left = 100 * (offset - span.queue_delay_ms) / total
        row.wait_width = 100 * span.queue_delay_ms / total
    if span.status == "dead" and span.step and span.message_id:
        row.dead_letter = f"{base}/dead-letters/{quote(span.step, safe='')}/{quote(span.message_id, safe='')}"
    row.left = min(row.left, 100 - MIN_WIDTH)
    row.width = min(row.width, 100 - row.left)
    return row
