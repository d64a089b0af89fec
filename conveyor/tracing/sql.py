"""The trace store over SQL, whatever the backend: writes in batches, reads with server-side filters.

A backend (:mod:`.sqlite_store`, :mod:`.postgres_store`) gives connections; the tables and
statements are in :mod:`.schema`, the rows and summaries in :mod:`.rows`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .queries import MAX_PER_PAGE, LogQuery, StepCounts, TraceDetail, TracePage, TraceQuery
from .rows import (
    check_log_query,
    check_trace_query,
    like_pattern,
    log_from_row,
    log_row,
    mends,
    span_from_row,
    span_row,
    summary_of,
    summed_up,
    tells,
)
from .schema import (
    CHUNK,
    ENSURE_SUMMARY,
    FOR_LIST,
    INSERT_LOG,
    INSERT_NEW_SPAN,
    LEVELS,
    LOG_COLUMNS,
    LOGS,
    SET_SUMMARY,
    SPAN_COLUMNS,
    SPANS,
    SUMMARY_COLUMNS,
    TRACES,
    UPSERT_SPAN,
    add_to_summary,
)
from .spans import LogLine, Span


def _start(span: Span) -> float:
    return span.started_at


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
            added = db.run_many(INSERT_NEW_SPAN, rows) if rows else 0
            if logs:
                db.run_many(INSERT_LOG, [log_row(line) for line in logs])
            if added == len(rows):
                fresh: dict[str, list[Span]] = {}
                for span in latest.values():
                    fresh.setdefault(span.trace_id, []).append(span)
                # Most spans (a run that went well) change nothing a trace's row keeps: they only make
                # sure it has one. Its span count and end are read with its spans (summary_of).
                telling: list[str] = []
                quiet: list[str] = []
                for trace_id in trace_ids:
                    (telling if tells(fresh[trace_id]) else quiet).append(trace_id)
                if telling:
                    db.run_many(self._add_to_summary, [summed_up(t, fresh[t]) for t in telling])
                if quiet:
                    db.run_many(ENSURE_SUMMARY, [summed_up(t, fresh[t]) for t in quiet])
                # A replay that went through may clear its trace's failure: only all its spans can say.
                mended = sorted({span.trace_id for span in latest.values() if mends(span)})
                if mended:
                    self._sum_up_again(db, mended)
                return
            # Some were there already: replace them, and sum those traces up from every span they have.
            db.run_many(UPSERT_SPAN, rows)
            self._sum_up_again(db, trace_ids)

    def _sum_up_again(self, db: Runner, trace_ids: Sequence[str]) -> None:
        """Set the summaries of ``trace_ids`` (sorted) from every span each has."""
        every: dict[str, list[Span]] = {}
        for row in self._rows_in(db, f"SELECT {SPAN_COLUMNS} FROM {SPANS} WHERE ", "trace_id", trace_ids):
            span = span_from_row(row)
            every.setdefault(span.trace_id, []).append(span)
        db.run_many(SET_SUMMARY, [summed_up(t, sorted(every[t], key=_start)) for t in trace_ids if t in every])

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
                f"SELECT {SUMMARY_COLUMNS} FROM {TRACES}{where} ORDER BY started_at DESC, trace_id DESC "
                "LIMIT ? OFFSET ?",
                [*params, query.per_page, offset],
            )
            of_trace: dict[str, list[tuple[Any, ...]]] = {}
            for span in self._rows_in(db, f"SELECT {FOR_LIST} FROM {SPANS} WHERE ", "trace_id", [r[0] for r in rows]):
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
            summary = db.rows(f"SELECT {SUMMARY_COLUMNS} FROM {TRACES} WHERE trace_id = ?", (trace_id,))
            if not summary:
                return None
            spans = db.rows(
                f"SELECT {SPAN_COLUMNS} FROM {SPANS} WHERE trace_id = ? ORDER BY started_at, span_id", (trace_id,)
            )
            logs = db.rows(f"SELECT {LOG_COLUMNS} FROM {LOGS} WHERE trace_id = ? ORDER BY at, id", (trace_id,))
        found = [span_from_row(r) for r in spans]
        listed = [(s.trace_id, s.step, s.flow, s.started_at, s.duration_ms, s.status) for s in found]
        return TraceDetail(summary_of(summary[0], listed), found, [log_from_row(r) for r in logs])

    def spans_of_message(self, message_id: str) -> list[Span]:
        """The spans (enqueue and every run) of one message, by start time."""
        with self._reading() as db:
            rows = db.rows(
                f"SELECT {SPAN_COLUMNS} FROM {SPANS} WHERE message_id = ? ORDER BY started_at, span_id", (message_id,)
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
                f"SELECT {LOG_COLUMNS} FROM {LOGS}{where} ORDER BY at DESC, id DESC LIMIT ? OFFSET ?",
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
                f"SELECT {SPAN_COLUMNS} FROM {SPANS} WHERE kind = 'cron' AND step = ? ORDER BY started_at DESC LIMIT ?",
                (step, limit),
            )
        return [span_from_row(row) for row in rows]
