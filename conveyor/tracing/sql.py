"""What the SQLite and PostgreSQL trace stores share: the tables, rows to and from spans, the
summary of a trace, and the queries (built once, with ``?`` placeholders).

Three tables: ``conveyor_trace_spans`` (one row per span id), ``conveyor_trace_logs`` and
``conveyor_trace_traces``, a summary row per trace that :meth:`SqlTraceStore.write` recomputes
from the spans of the traces a batch touched (so listing traces never groups the span table,
and a span written again is counted once).
"""

from __future__ import annotations

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .queries import (
    MAX_PAGE,
    MAX_PER_PAGE,
    TRACE_STATUSES,
    LogQuery,
    StepCounts,
    TraceDetail,
    TracePage,
    TraceQuery,
    TraceSummary,
)
from .spans import LogLine, Span, SpanEvent

SPANS = "conveyor_trace_spans"
LOGS = "conveyor_trace_logs"
TRACES = "conveyor_trace_traces"
#: The version :func:`schema` makes; bump it with every change there.
SCHEMA_VERSION = 1

_SPAN_COLUMNS = (
    "span_id, trace_id, parent_id, kind, name, started_at, duration_ms, status, step, flow, message_id, attempt, "
    "queue_delay_ms, error_type, error, traceback, http_status, payload, attrs, events"
)
_LOG_COLUMNS = "trace_id, span_id, at, level, level_no, logger, message, step, fields"
_SUMMARY_COLUMNS = "trace_id, name, started_at, ended_at, spans, errors, status"
#: What a summary is computed from, per span.
_FOR_SUMMARY = "trace_id, parent_id, name, started_at, duration_ms, status, kind, http_status, step, flow"

#: Numbers of the log levels, for "this level and above".
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
#: Trace ids per statement in deletes and summary reads.
CHUNK = 500


def schema(log_id: str) -> tuple[str, ...]:
    """The DDL of both backends (SQLite reads ``double precision`` as REAL); ``log_id`` is the logs' key column."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {SPANS} (
            span_id text NOT NULL, trace_id text NOT NULL, parent_id text, kind text NOT NULL,
            name text NOT NULL, started_at double precision NOT NULL, duration_ms double precision NOT NULL,
            status text NOT NULL, step text, flow text, message_id text, attempt integer,
            queue_delay_ms double precision, error_type text, error text, traceback text, http_status integer,
            payload text, attrs text NOT NULL, events text NOT NULL,
            PRIMARY KEY (trace_id, span_id))""",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_message ON {SPANS} (message_id) WHERE message_id IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_step ON {SPANS} (step, started_at) WHERE step IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_flow ON {SPANS} (flow) WHERE flow IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS {LOGS} (
            {log_id}, trace_id text NOT NULL, span_id text, at double precision NOT NULL, level text NOT NULL,
            level_no integer NOT NULL, logger text NOT NULL, message text NOT NULL, step text, fields text NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {LOGS}_trace ON {LOGS} (trace_id, at)",
        f"CREATE INDEX IF NOT EXISTS {LOGS}_at ON {LOGS} (at)",
        f"""CREATE TABLE IF NOT EXISTS {TRACES} (
            trace_id text PRIMARY KEY, name text NOT NULL, started_at double precision NOT NULL,
            ended_at double precision NOT NULL, spans integer NOT NULL, errors integer NOT NULL,
            status text NOT NULL, rooted integer NOT NULL DEFAULT 0)""",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_start ON {TRACES} (started_at)",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_status ON {TRACES} (status, started_at)",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_end ON {TRACES} (ended_at)",
    )


_UPSERT_SPAN = (
    f"INSERT INTO {SPANS} ({_SPAN_COLUMNS}) VALUES ({', '.join('?' * 20)}) "
    "ON CONFLICT (trace_id, span_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _SPAN_COLUMNS.split(", ")[1:])
)
_INSERT_LOG = f"INSERT INTO {LOGS} ({_LOG_COLUMNS}) VALUES ({', '.join('?' * 9)})"
_INSERT_NEW_SPAN = (
    f"INSERT INTO {SPANS} ({_SPAN_COLUMNS}) VALUES ({', '.join('?' * 20)}) ON CONFLICT (trace_id, span_id) DO NOTHING"
)
_SET_SUMMARY = (
    f"INSERT INTO {TRACES} ({_SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) "
    "ON CONFLICT (trace_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [*_SUMMARY_COLUMNS.split(", ")[1:], "rooted"])
)


_ENSURE_SUMMARY = (
    f"INSERT INTO {TRACES} ({_SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) ON CONFLICT (trace_id) DO NOTHING"
)


def _tells(spans: list[Span]) -> bool:
    """Do these new spans of a trace change its row: one starts the trace, or one failed?"""
    return any(
        span.parent_id is None
        or span.status in ("error", "dead")
        or (span.kind == "http" and int(span.attrs.get("http_status") or 0) >= 500)
        for span in spans
    )


def add_to_summary(least: str, greatest: str) -> str:
    """The statement that adds a batch's summary of a trace's new spans to the summary so far, in
    the database (``least``/``greatest``: the backend's two-argument min and max)."""
    t, x = TRACES, "excluded"
    return (
        f"INSERT INTO {t} ({_SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) "
        f"ON CONFLICT (trace_id) DO UPDATE SET "
        f"name = CASE WHEN {t}.rooted = 1 THEN {t}.name WHEN {x}.rooted = 1 THEN {x}.name "
        f"WHEN {x}.started_at < {t}.started_at THEN {x}.name ELSE {t}.name END, "
        f"rooted = {greatest}({t}.rooted, {x}.rooted), "
        f"started_at = {least}({t}.started_at, {x}.started_at), "
        f"ended_at = {greatest}({t}.ended_at, {x}.ended_at), "
        f"spans = {t}.spans + {x}.spans, errors = {t}.errors + {x}.errors, "
        f"status = CASE WHEN 'failed' IN ({t}.status, {x}.status) THEN 'failed' "
        f"WHEN 'retried' IN ({t}.status, {x}.status) THEN 'retried' ELSE 'ok' END"
    )


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


#: What :func:`summary_of` reads of each span.
_FOR_LIST = "trace_id, step, flow, started_at, duration_ms, status"


def summary_of(row: Sequence[Any], spans: Sequence[Sequence[Any]]) -> TraceSummary:
    """A trace's summary: its row (name, start, status) and, counted from its spans' :data:`_FOR_LIST`
    columns, how many it has, its errors, its end, its steps and flows (in the order they first ran)."""
    ended = max([row[3], *(span[3] + span[4] / 1000 for span in spans)])
    errors = sum(1 for span in spans if span[5] in ("error", "dead"))
    steps = list(dict.fromkeys(span[1] for span in sorted(spans, key=lambda span: span[3]) if span[1]))
    flows = list(dict.fromkeys(span[2] for span in sorted(spans, key=lambda span: span[3]) if span[2]))
    return TraceSummary(row[0], row[1], row[2], ended, len(spans) or row[4], errors, row[6], steps, flows)


def summarise(trace_id: str, rows: list[Sequence[Any]]) -> tuple[Any, ...]:
    """The summary row of a trace from its spans' :data:`_FOR_SUMMARY` columns (every span it has)."""
    rows = sorted(rows, key=lambda r: r[3])
    failed = any(r[5] == "dead" or (r[6] == "http" and r[7] is not None and r[7] >= 500) for r in rows)
    status = "failed" if failed else "retried" if any(r[5] == "error" for r in rows) else "ok"
    root = next((r for r in rows if r[1] is None), None)
    ended = max(r[3] + r[4] / 1000 for r in rows)
    errors = sum(1 for r in rows if r[5] in ("error", "dead"))
    name = (root or rows[0])[2]
    return (trace_id, name, rows[0][3], ended, len(rows), errors, status, int(bool(root)))


def summed_up(trace_id: str, spans: list[Span]) -> tuple[Any, ...]:
    """The summary row of ``spans``, all of one trace (and ``rooted``: whether one of them has no parent)."""
    first = root = None
    ended, errors, failed = 0.0, 0, False
    for span in spans:
        if first is None or span.started_at < first.started_at:
            first = span
        if root is None and span.parent_id is None:
            root = span
        ended = max(ended, span.ended_at)
        if span.status in ("error", "dead"):
            errors += 1
        if span.status == "dead" or (span.kind == "http" and int(span.attrs.get("http_status") or 0) >= 500):
            failed = True
    assert first is not None
    status = "failed" if failed else "retried" if errors else "ok"
    return (trace_id, (root or first).name, first.started_at, ended, len(spans), errors, status, int(root is not None))


def like_pattern(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards taken literally (``ESCAPE '!'``)."""
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def _check_page(page: int, per_page: int) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page: ask for 1 to {MAX_PER_PAGE} rows a page, not {per_page}")
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page: pages count from 1 to {MAX_PAGE}, not {page}")


def check_trace_query(query: TraceQuery) -> None:
    """Raise ValueError naming the field of ``query`` that no store can answer."""
    _check_page(query.page, query.per_page)
    if query.status is not None and query.status not in TRACE_STATUSES:
        raise ValueError(f"status: one of {', '.join(TRACE_STATUSES)}, not {query.status!r}")
    if query.min_duration_ms is not None and query.min_duration_ms < 0:
        raise ValueError(f"min_duration_ms: a duration of 0 or more, not {query.min_duration_ms}")


def check_log_query(query: LogQuery) -> None:
    _check_page(query.page, query.per_page)
    if query.level is not None and query.level.upper() not in LEVELS:
        raise ValueError(f"level: one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not {query.level!r}")


class Runner(Protocol):
    """A connection, as the shared code uses it: statements take ``?`` placeholders."""

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, statement: str, params: Sequence[Any] = ()) -> None: ...

    def run_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``statement`` once per row; returns how many rows it changed in all."""
        ...


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


class SqlTraceStore(ABC):
    """The :class:`~conveyor.tracing.queries.TraceStore` over SQL; a backend supplies connections."""

    #: The case-insensitive LIKE of the backend, and its two-argument min and max.
    like = "LIKE"
    least = "min"
    greatest = "max"

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Runner]:
        """A connection for reads (no transaction needed)."""

    @abstractmethod
    def _writing(self) -> AbstractContextManager[Runner]:
        """A connection inside a write transaction, committed on a clean exit."""

    def _lock_traces(self, db: Runner, trace_ids: Sequence[str]) -> None:
        """Serialise writers of the same traces until the transaction ends (``trace_ids`` sorted).

        SQLite needs nothing here: its writers already hold the file's lock (BEGIN IMMEDIATE).
        """
        return None

    def _member(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    # -- writes --------------------------------------------------------------------------------

    def write(self, spans: list[Span], logs: list[LogLine]) -> None:
        """Keep ``spans`` and ``logs`` in one transaction; a span id written again replaces its row.

        A batch of new spans adds its own sums to each trace's summary, in the database; a
        batch that writes a span again sums its traces up again from all their spans.
        """
        latest = {span.span_id: span for span in spans}  # the last of a span id in the batch wins
        if not latest and not logs:
            return
        # Keyed by trace first: trace ids sort by time, so the rows land together at the index's end.
        span_ids = sorted(latest, key=lambda key: (latest[key].trace_id, key))
        trace_ids = sorted({span.trace_id for span in latest.values()})
        with self._writing() as db:
            self._lock_traces(db, trace_ids)
            rows = [span_row(latest[key]) for key in span_ids]
            added = db.run_many(_INSERT_NEW_SPAN, rows) if rows else 0
            if logs:
                db.run_many(_INSERT_LOG, [log_row(line) for line in logs])
            if added == len(rows):
                fresh: dict[str, list[Span]] = {}
                for span in latest.values():
                    fresh.setdefault(span.trace_id, []).append(span)
                # Most spans (a run that went well) change nothing a trace's row keeps: they only make
                # sure it has one. Its span count and end are read with its spans (summary_of).
                telling = [t for t in trace_ids if _tells(fresh[t])]
                quiet = [t for t in trace_ids if not _tells(fresh[t])]
                if telling:
                    db.run_many(self._add_to_summary, [summed_up(t, fresh[t]) for t in telling])
                if quiet:
                    db.run_many(_ENSURE_SUMMARY, [summed_up(t, fresh[t]) for t in quiet])
                return
            # Some were there already: replace them, and sum those traces up from every span they have.
            db.run_many(_UPSERT_SPAN, rows)
            by_trace: dict[str, list[Sequence[Any]]] = {}
            for row in self._rows_in(db, f"SELECT {_FOR_SUMMARY} FROM {SPANS} WHERE ", "trace_id", trace_ids):
                by_trace.setdefault(row[0], []).append(row)
            db.run_many(_SET_SUMMARY, [summarise(t, by_trace[t]) for t in trace_ids if t in by_trace])

    @functools.cached_property
    def _add_to_summary(self) -> str:
        return add_to_summary(self.least, self.greatest)

    def _rows_in(self, db: Runner, select: str, column: str, values: Sequence[str]) -> list[tuple[Any, ...]]:
        """``select`` (ending in ``WHERE``) for rows whose ``column`` is one of ``values``, a chunk at a time."""
        found: list[tuple[Any, ...]] = []
        for chunk in _chunks(values):
            where, params = self._member(column, chunk)
            found += db.rows(select + where, params)
        return found

    def prune(self, *, now: float, ok_age: float, failed_age: float, max_traces: int) -> int:
        """Forget traces that ended more than ``ok_age`` seconds ago (``failed_age`` for a failed
        one), then the oldest beyond ``max_traces``; returns how many traces went."""
        with self._reading() as db:
            old = db.rows(
                f"SELECT trace_id FROM {TRACES} WHERE (status <> 'failed' AND ended_at < ?) "
                "OR (status = 'failed' AND ended_at < ?)",
                (now - ok_age, now - failed_age),
            )
        removed = self._forget(sorted(row[0] for row in old))
        with self._reading() as db:
            over = int(db.rows(f"SELECT count(*) FROM {TRACES}")[0][0]) - max_traces
            oldest = (
                db.rows(f"SELECT trace_id FROM {TRACES} ORDER BY started_at, trace_id LIMIT ?", (over,))
                if over > 0
                else []
            )
        removed += self._forget(sorted(row[0] for row in oldest))
        # Log lines of traces whose spans never arrived (dropped): gone once past every retention.
        with self._writing() as db:
            db.run(
                f"DELETE FROM {LOGS} WHERE at < ? AND NOT EXISTS "
                f"(SELECT 1 FROM {TRACES} t WHERE t.trace_id = {LOGS}.trace_id)",
                (now - max(ok_age, failed_age),),
            )
        return removed

    def _forget(self, trace_ids: Sequence[str]) -> int:
        for chunk in _chunks(trace_ids):
            with self._writing() as db:
                self._lock_traces(db, chunk)
                where, params = self._member("trace_id", chunk)
                for table in (LOGS, SPANS, TRACES):
                    db.run(f"DELETE FROM {table} WHERE {where}", params)
        return len(trace_ids)

    # -- reads ---------------------------------------------------------------------------------

    def traces(self, query: TraceQuery) -> TracePage:
        """The traces matching ``query``, newest first, one page of them (ValueError names a bad field)."""
        check_trace_query(query)
        clauses, params = self._trace_filter(query)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        offset = (query.page - 1) * query.per_page
        with self._reading() as db:
            total = db.rows(f"SELECT count(*) FROM {TRACES}{where}", params)[0][0]
            rows = db.rows(
                f"SELECT {_SUMMARY_COLUMNS} FROM {TRACES}{where} ORDER BY started_at DESC, trace_id DESC "
                "LIMIT ? OFFSET ?",
                [*params, query.per_page, offset],
            )
            of_trace: dict[str, list[tuple[Any, ...]]] = {}
            for span in self._rows_in(db, f"SELECT {_FOR_LIST} FROM {SPANS} WHERE ", "trace_id", [r[0] for r in rows]):
                of_trace.setdefault(span[0], []).append(span)
        page = [summary_of(row, of_trace.get(row[0], [])) for row in rows]
        return TracePage(page, int(total), query.page, query.per_page)

    def _trace_filter(self, query: TraceQuery) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def where(clause: str, *values: Any) -> None:
            clauses.append(clause)
            params.extend(values)

        spans_where = f"trace_id IN (SELECT trace_id FROM {SPANS} WHERE "
        if query.status is not None:
            where("status = ?", query.status)
        if query.since is not None:
            where("started_at >= ?", query.since)
        if query.until is not None:
            where("started_at <= ?", query.until)
        if query.min_duration_ms is not None:
            # From the spans: a trace's row keeps its end only as of the last span that changed it.
            where(
                f"(SELECT max(s.started_at + s.duration_ms / 1000.0) FROM {SPANS} s "
                f"WHERE s.trace_id = {TRACES}.trace_id) - started_at >= ?",
                query.min_duration_ms / 1000,
            )
        if query.trace_id is not None:
            where("trace_id = ?", query.trace_id)
        if query.step is not None:
            where(spans_where + "step = ?)", query.step)
        if query.flow is not None:
            where(spans_where + "flow = ?)", query.flow)
        if query.message_id is not None:
            where(spans_where + "message_id = ?)", query.message_id)
        if query.text:
            like = f"{self.like} ? ESCAPE '!'"
            pattern = like_pattern(query.text)
            where(spans_where + f"payload {like} OR error {like} OR name {like})", pattern, pattern, pattern)
        return clauses, params

    def trace(self, trace_id: str) -> TraceDetail | None:
        """One trace in full, or ``None`` if the store holds none of its spans."""
        with self._reading() as db:
            summary = db.rows(f"SELECT {_SUMMARY_COLUMNS} FROM {TRACES} WHERE trace_id = ?", (trace_id,))
            if not summary:
                return None
            spans = db.rows(
                f"SELECT {_SPAN_COLUMNS} FROM {SPANS} WHERE trace_id = ? ORDER BY started_at, span_id", (trace_id,)
            )
            logs = db.rows(f"SELECT {_LOG_COLUMNS} FROM {LOGS} WHERE trace_id = ? ORDER BY at, id", (trace_id,))
        found = [span_from_row(r) for r in spans]
        listed = [(s.trace_id, s.step, s.flow, s.started_at, s.duration_ms, s.status) for s in found]
        return TraceDetail(summary_of(summary[0], listed), found, [log_from_row(r) for r in logs])

    def spans_of_message(self, message_id: str) -> list[Span]:
        """The spans (enqueue and every run) of one message, by start time."""
        with self._reading() as db:
            rows = db.rows(
                f"SELECT {_SPAN_COLUMNS} FROM {SPANS} WHERE message_id = ? ORDER BY started_at, span_id", (message_id,)
            )
        return [span_from_row(row) for row in rows]

    def logs(self, query: LogQuery) -> list[LogLine]:
        """Log lines matching ``query``, newest first (``level``: that level and above)."""
        check_log_query(query)
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("level_no >= ?", LEVELS[query.level.upper()] if query.level else None),
            ("step = ?", query.step),
            ("trace_id = ?", query.trace_id),
            (f"message {self.like} ? ESCAPE '!'", like_pattern(query.text) if query.text else None),
            ("at >= ?", query.since),
            ("at <= ?", query.until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as db:
            rows = db.rows(
                f"SELECT {_LOG_COLUMNS} FROM {LOGS}{where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?",
                [*params, query.per_page, (query.page - 1) * query.per_page],
            )
        return [log_from_row(row) for row in rows]

    def step_counts(self, since: float) -> dict[str, StepCounts]:
        """Runs per step since ``since``, by outcome."""
        with self._reading() as db:
            rows = db.rows(
                f"SELECT step, status, count(*) FROM {SPANS} WHERE kind = 'run' AND started_at >= ? "
                "AND step IS NOT NULL GROUP BY step, status",
                (since,),
            )
        counts: dict[str, dict[str, int]] = {}
        for step, status, count in rows:
            counts.setdefault(step, {})[status] = int(count)
        return {
            step: StepCounts(
                runs=sum(by.values()),
                ok=by.get("ok", 0),
                errors=by.get("error", 0),
                dead=by.get("dead", 0),
                skipped=by.get("skipped", 0),
            )  # fmt: skip
            for step, by in counts.items()
        }

    def cron_fires(self, step: str, limit: int = 10) -> list[Span]:
        """The last ``limit`` cron spans of ``step``, newest first."""
        if not 1 <= limit <= MAX_PER_PAGE:
            raise ValueError(f"limit: ask for 1 to {MAX_PER_PAGE} cron fires, not {limit}")
        with self._reading() as db:
            rows = db.rows(
                f"SELECT {_SPAN_COLUMNS} FROM {SPANS} WHERE kind = 'cron' AND step = ? "
                "ORDER BY started_at DESC LIMIT ?",
                (step, limit),
            )
        return [span_from_row(row) for row in rows]
