"""Traces in a terminal: the list ``python -m actors traces`` prints, and one trace's timeline."""

from __future__ import annotations

from datetime import UTC, datetime

from ..tracing.queries import TraceDetail, TracePage
from ..tracing.spans import Span
from .text import table

#: Characters of the bar column in a timeline.
BAR_WIDTH = 40


def when(at: float) -> str:
    """``at`` (seconds since the epoch) as a UTC time to the millisecond."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def traces_table(page: TracePage) -> str:
    """The trace list, newest first, with a line saying which page this is."""
    if not page.traces:
        return "No traces match."
    rows = [
        [when(t.started_at), t.trace_id, t.status, f"{t.duration_ms:.1f}", t.spans, t.errors, t.name]
        for t in page.traces
    ]
    shown = table(["STARTED (UTC)", "TRACE", "STATUS", "MS", "SPANS", "ERRORS", "NAME"], rows, right=[3, 4, 5])
    last = (page.total + page.per_page - 1) // page.per_page
    return f"{shown}\n(page {page.page} of {max(last, 1)}, {page.total} traces; --page N for another)"


def trace_timeline(detail: TraceDetail) -> str:
    """One trace as a tree of spans with bars on a shared time axis, each span's logs under it."""
    summary = detail.summary
    start = summary.started_at
    total = max(summary.ended_at - start, 1e-6)
    children: dict[str | None, list[Span]] = {}
    known = {span.span_id for span in detail.spans}
    for span in detail.spans:
        parent = span.parent_id if span.parent_id in known else None
        children.setdefault(parent, []).append(span)
    logs: dict[str | None, list[str]] = {}
    for line in detail.logs:
        logs.setdefault(line.span_id, []).append(f"{when(line.at)[11:]} {line.level:<7} {line.message}")
    lines = [
        f"Trace {summary.trace_id}: {summary.name}",
        f"  {summary.status}, {summary.spans} spans, {summary.errors} errors, {summary.duration_ms:.1f} ms,"
        f" started {when(start)} UTC",
        "",
    ]

    def walk(span: Span, depth: int) -> None:
        lines.append(_span_line(span, depth, start, total))
        indent = "  " * (depth + 2)
        if span.error:
            lines.append(f"{indent}! {span.error_type}: {span.error}")
        for event in span.events:
            lines.append(f"{indent}~ {event.name} {when(event.at)[11:]} {event.attrs or ''}".rstrip())
        for text in logs.get(span.span_id, []):
            lines.append(f"{indent}| {text}")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines)


def _span_line(span: Span, depth: int, start: float, total: float) -> str:
    waited = (span.queue_delay_ms or 0) / 1000
    begin = span.started_at - waited
    left = int((begin - start) / total * BAR_WIDTH)
    wait = int(waited / total * BAR_WIDTH)
    run = max(1, int(span.duration_ms / 1000 / total * BAR_WIDTH))
    bar = (" " * left + "." * wait + "#" * run)[:BAR_WIDTH].ljust(BAR_WIDTH)
    attempt = f" attempt {span.attempt}" if span.attempt else ""
    delay = f", waited {span.queue_delay_ms:.1f} ms" if span.queue_delay_ms is not None else ""
    label = f"{'  ' * depth}{span.kind} {span.name}{attempt}"
    return f"[{bar}] {label}  {span.status} {span.duration_ms:.1f} ms{delay}"
