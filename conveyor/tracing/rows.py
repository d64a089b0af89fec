"""Rows to and from spans and log lines, a trace's summary, and the checks of a query's values."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from .queries import MAX_PAGE, MAX_PER_PAGE, TRACE_STATUSES, LogQuery, TraceQuery, TraceSummary
from .schema import LEVELS
from .spans import LogLine, Span, SpanEvent

#: One encoder for every row (``json.dumps`` with options builds a new one per call).
_encoder = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":"))


def _json(value: Any) -> str:
    return _encoder.encode(value) if value else ("{}" if isinstance(value, dict) else "[]")


def _text(value: str | None) -> str | None:
    # PostgreSQL's text refuses NUL; an exception's message may hold one.
    return None if value is None else value.replace("\x00", "\\x00")


def span_row(span: Span) -> tuple[Any, ...]:
    """The row of ``span``; its payload preview gets a column of its own (the text filter reads it)."""
    attrs = dict(span.attrs)
    payload = attrs.pop("payload", None)
    if payload is not None and not isinstance(payload, str):
        attrs["payload"], payload = payload, None
    status = attrs.get("http_status")
    http_status = int(status) if span.kind == "http" and isinstance(status, int | float) else None
    return (
        span.span_id, span.trace_id, span.parent_id, span.kind, _text(span.name), span.started_at, span.duration_ms,
        span.status, span.step, span.flow, span.message_id, span.attempt, span.queue_delay_ms, span.error_type,
        _text(span.error), _text(span.traceback), http_status, _text(payload), _json(attrs),
        _json([event.to_json() for event in span.events]),
    )  # fmt: skip


def span_from_row(row: Sequence[Any]) -> Span:
    attrs: dict[str, Any] = json.loads(row[18])
    if row[17] is not None:
        attrs["payload"] = row[17]
    return Span(
        span_id=row[0], trace_id=row[1], parent_id=row[2], kind=row[3], name=row[4], started_at=row[5],
        duration_ms=row[6], status=row[7], step=row[8], flow=row[9], message_id=row[10], attempt=row[11],
        queue_delay_ms=row[12], error_type=row[13], error=row[14], traceback=row[15], attrs=attrs,
        events=[SpanEvent(e["name"], e["at"], e.get("attrs", {})) for e in json.loads(row[19])],
    )  # fmt: skip


def level_number(level: str) -> int:
    """A level name's number (``WARNING`` is 30); a name logging does not know counts as 0."""
    number = LEVELS.get(level.upper())
    if number is None:
        known = logging.getLevelName(level.upper())
        number = known if isinstance(known, int) else 0
    return number


def log_row(line: LogLine) -> tuple[Any, ...]:
    return (
        line.trace_id, line.span_id, line.at, line.level, level_number(line.level), line.logger,
        _text(line.message), line.step, _json(line.fields),
    )  # fmt: skip


def log_from_row(row: Sequence[Any]) -> LogLine:
    return LogLine(row[0], row[1], row[2], row[3], row[5], row[6], row[7], json.loads(row[8]))


def summary_of(row: Sequence[Any], spans: Sequence[Sequence[Any]]) -> TraceSummary:
    """A trace's summary: its row (name, start, status) and, counted from its spans' ``FOR_LIST``
    columns (:mod:`.schema`), how many it has, its errors, its end, its steps and flows (in the
    order they first ran)."""
    ended = max([row[3], *(span[3] + span[4] / 1000 for span in spans)])
    errors = sum(1 for span in spans if span[5] in ("error", "dead"))
    in_order = sorted(spans, key=lambda span: span[3])
    steps = list(dict.fromkeys(span[1] for span in in_order if span[1]))
    flows = list(dict.fromkeys(span[2] for span in in_order if span[2]))
    return TraceSummary(row[0], row[1], row[2], ended, len(spans) or row[4], errors, row[6], steps, flows)


def summed_up(trace_id: str, spans: list[Span]) -> tuple[Any, ...]:
    """The summary row of ``spans``, all of one trace (and ``rooted``: whether one of them has no parent)."""
    first = root = None
    ended, errors = 0.0, 0
    for span in spans:
        if first is None or span.started_at < first.started_at:
            first = span
        if root is None and span.parent_id is None:
            root = span
        ended = max(ended, span.ended_at)
        if span.status in ("error", "dead"):
            errors += 1
    assert first is not None
    status = "failed" if _failed(spans) else "retried" if errors else "ok"
    return (trace_id, (root or first).name, first.started_at, ended, len(spans), errors, status, int(root is not None))


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards taken literally (``ESCAPE '!'``)."""
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def check_page(page: int, per_page: int) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page: ask for 1 to {MAX_PER_PAGE} rows a page, not {per_page}")
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page: pages count from 1 to {MAX_PAGE}, not {page}")


def check_trace_query(query: TraceQuery) -> None:
    """Raise ValueError naming the field of ``query`` that no store can answer."""
    check_page(query.page, query.per_page)
    if query.status is not None and query.status not in TRACE_STATUSES:
        raise ValueError(f"status: one of {', '.join(TRACE_STATUSES)}, not {query.status!r}")
    if query.min_duration_ms is not None and query.min_duration_ms < 0:
        raise ValueError(f"min_duration_ms: a duration of 0 or more, not {query.min_duration_ms}")


def check_log_query(query: LogQuery) -> None:
    check_page(query.page, query.per_page)
    if query.level is not None and query.level.upper() not in LEVELS:
        raise ValueError(f"level: one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {query.level!r}")


def fails_trace(span: Span) -> bool:
    """Does ``span`` make its trace ``failed``: a message dead-lettered, or a request answered 5xx?"""
    return span.status == "dead" or (span.kind == "http" and int(span.attrs.get("http_status") or 0) >= 500)


def mends(span: Span) -> bool:
    """Is ``span`` the run of a replay that went through (its trace may no longer be ``failed``)?"""
    return span.kind == "run" and bool(span.attrs.get("replays")) and span.status in ("ok", "skipped")


def _failed(spans: list[Span]) -> bool:
    """Does a failure stand in these spans of one trace: a 5xx, or a dead message no replay got through
    (a replay of a dead replay counts, if that one got through)?"""
    if any(span.kind == "http" and fails_trace(span) for span in spans):
        return True
    dead = {span.message_id for span in spans if span.status == "dead"}
    if not dead:
        return False
    through = {span.message_id for span in spans if span.kind == "run" and span.status in ("ok", "skipped")}
    replays: dict[str, list[str]] = {}  # a dead message's id: the ids of the messages that replayed it
    for span in spans:
        if span.kind == "run" and (of := span.attrs.get("replays")) and span.message_id:
            replays.setdefault(str(of), []).append(span.message_id)

    def mended(message_id: str | None, seen: frozenset[str] = frozenset()) -> bool:
        return message_id is not None and any(
            again in through or (again in dead and again not in seen and mended(again, seen | {again}))
            for again in replays.get(message_id, [])
        )

    return any(not mended(message_id) for message_id in dead)


def tells(spans: list[Span]) -> bool:
    """Do these new spans of a trace change its row: one starts the trace, or one failed?"""
    return any(span.parent_id is None or span.status == "error" or fails_trace(span) for span in spans)
