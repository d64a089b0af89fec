"""The trace store's contract, on SQLite (a file of its own) and on PostgreSQL (the suite's server)."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conveyor.config import parse_config
from conveyor.tracing.postgres_store import PostgresTraceStore
from conveyor.tracing.queries import MAX_PAGE, MAX_PER_PAGE, LogQuery, TraceQuery
from conveyor.tracing.spans import LogLine, Span, SpanEvent, new_span_id
from conveyor.tracing.sql import SqlTraceStore
from conveyor.tracing.sqlite_store import SqliteTraceStore
from conveyor.tracing.stores import open_trace_store
from devtools.postgres import PostgresServer
from tests.trace_samples import Sample, cron_fire, http_request, replay, retried_then_dead

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
T0 = 1_700_000_000.0
TABLES = "conveyor_trace_spans, conveyor_trace_logs, conveyor_trace_traces"


@pytest.fixture(params=BACKENDS)
def traces(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlTraceStore]:
    """An empty trace store: a SQLite file under tmp_path, or the suite's PostgreSQL with its trace tables emptied."""
    store: SqlTraceStore
    if request.param == "sqlite":
        store = SqliteTraceStore(tmp_path / "var" / "traces.db")
    else:
        url = request.getfixturevalue("postgres").url
        empty_postgres(url)
        store = PostgresTraceStore(url)
    yield store
    store.close()


def empty_postgres(url: str) -> None:
    """Empty the trace tables, if a test made them (the state's tables are left alone)."""
    with psycopg.connect(url, autocommit=True) as db:
        if db.execute("SELECT to_regclass('conveyor_trace_spans') IS NOT NULL").fetchone() == (True,):
            db.execute(f"TRUNCATE {TABLES}")


def keep(store: SqlTraceStore, *samples: Sample) -> None:
    for sample in samples:
        store.write(sample.spans, sample.logs)


def ids(store: SqlTraceStore, **filters: object) -> set[str]:
    page = store.traces(TraceQuery(per_page=MAX_PER_PAGE, **filters))  # type: ignore[arg-type]
    assert page.total == len(page.traces)
    return {summary.trace_id for summary in page.traces}


def test_every_field_of_a_span_and_a_log_line_comes_back(traces: SqlTraceStore) -> None:
    span = Span(
        uuid.uuid4().hex, new_span_id(), new_span_id(), "run", "process q", T0 + 0.123456, 12.75, status="dead",
        step="ChargeCard", flow="billing", message_id="m-1", attempt=4, queue_delay_ms=3.5, error_type="KeyError",
        error="'card' \x00 missing", traceback="Traceback ...\nKeyError: 'card'",
        attrs={"payload": '{"amount":"50%_off"}', "payload_size": 20, "queue": "q", "nested": {"a": [1, 2.5, None]}},
        events=[SpanEvent("retry_scheduled", T0 + 1, {"delay_ms": 250}), SpanEvent("dead_lettered", T0 + 2)],
    )  # fmt: skip
    line = LogLine(span.trace_id, span.span_id, T0 + 0.2, "WARNING", "conveyor.steps.x", "héllo", "ChargeCard",
                   {"orderId": "o-1", "n": 3})  # fmt: skip
    traces.write([span], [line])
    detail = traces.trace(span.trace_id)
    assert detail is not None
    assert detail.spans == [dataclasses.replace(span, error="'card' \\x00 missing")]
    assert detail.logs == [line]
    assert traces.trace(uuid.uuid4().hex) is None


def test_a_request_with_its_enqueues_and_runs_sums_up(traces: SqlTraceStore) -> None:
    sample = http_request(T0)
    keep(traces, sample)
    detail = traces.trace(sample.trace_id)
    assert detail is not None
    summary = detail.summary
    assert (summary.name, summary.spans, summary.errors, summary.status) == ("POST /orders", 5, 0, "ok")
    assert summary.steps == ["CreateOrder", "ProcessOrder", "SendNotification"]
    assert summary.flows == ["order-processing"]
    assert summary.started_at == T0
    assert summary.ended_at == max(span.ended_at for span in sample.spans)
    assert [s.started_at for s in detail.spans] == sorted(s.started_at for s in sample.spans)
    assert [line.at for line in detail.logs] == sorted(line.at for line in sample.logs)


def test_a_retried_then_dead_message_keeps_every_attempt_and_fails_its_trace(traces: SqlTraceStore) -> None:
    dead = retried_then_dead(T0, attempts=3)
    keep(traces, dead)
    summary = traces.traces(TraceQuery()).traces[0]
    assert (summary.status, summary.errors, summary.spans) == ("failed", 3, 5)
    message = dead.span("enqueue").message_id
    assert message is not None
    spans = traces.spans_of_message(message)
    assert [(s.kind, s.attempt, s.status) for s in spans] == [
        ("enqueue", None, "ok"), ("run", 1, "error"), ("run", 2, "error"), ("run", 3, "dead")
    ]  # fmt: skip
    assert [s.error for s in spans[1:]] == [f"card declined (attempt {n})" for n in (1, 2, 3)]
    assert [s.events[0].name for s in spans[1:]] == ["retry_scheduled", "retry_scheduled", "dead_lettered"]


def test_status_rules(traces: SqlTraceStore) -> None:
    retried = retried_then_dead(T0, attempts=2)
    retried.spans[-1].status = "ok"
    server_error = http_request(T0 + 1, http_status=503)
    client_error = http_request(T0 + 2, http_status=404)
    keep(traces, retried, server_error, client_error)
    status = {s.trace_id: s.status for s in traces.traces(TraceQuery()).traces}
    assert status == {retried.trace_id: "retried", server_error.trace_id: "failed", client_error.trace_id: "ok"}


def test_a_replay_lands_in_the_original_trace(traces: SqlTraceStore) -> None:
    dead = retried_then_dead(T0, attempts=1)
    keep(traces, dead)
    keep(traces, replay(dead, T0 + 600))
    page = traces.traces(TraceQuery())
    assert page.total == 1
    summary = page.traces[0]
    # The replay went through: nothing stays failed, and the errors on the way say "retried".
    assert (summary.name, summary.spans, summary.status) == ("POST /charges", 5, "retried")
    assert summary.ended_at > T0 + 600
    detail = traces.trace(dead.trace_id)
    assert detail is not None
    assert detail.spans[-2].attrs["source"] == "replay"


def test_a_trace_stays_failed_until_a_replay_gets_through(traces: SqlTraceStore) -> None:
    dead = retried_then_dead(T0, attempts=2)
    keep(traces, dead)
    died_again = replay(dead, T0 + 600, outcome="dead")
    keep(traces, died_again)
    assert [s.status for s in traces.traces(TraceQuery()).traces] == ["failed"]
    keep(traces, replay(died_again, T0 + 1200))  # the dead replay, replayed: this time it goes through
    assert [s.status for s in traces.traces(TraceQuery()).traces] == ["retried"]
    assert ids(traces, status="failed") == set() and ids(traces, status="retried") == {dead.trace_id}


def test_a_replay_that_went_through_leaves_another_dead_message_failed(traces: SqlTraceStore) -> None:
    dead = retried_then_dead(T0, attempts=1)
    other_enqueue = dataclasses.replace(dead.spans[1], span_id=new_span_id(), message_id=uuid.uuid4().hex)
    other_dead = dataclasses.replace(dead.spans[2], span_id=new_span_id(), parent_id=other_enqueue.span_id,
                                     message_id=other_enqueue.message_id, status="dead")  # fmt: skip
    dead.spans += [other_enqueue, other_dead]
    keep(traces, dead, replay(dead, T0 + 600))
    assert [s.status for s in traces.traces(TraceQuery()).traces] == ["failed"]


def test_a_span_written_again_replaces_its_row(traces: SqlTraceStore) -> None:
    sample = http_request(T0)
    keep(traces, sample)
    rewritten = dataclasses.replace(sample.spans[-1], status="dead", error="boom")
    traces.write([rewritten, rewritten], [])
    summary = traces.traces(TraceQuery()).traces[0]
    assert (summary.spans, summary.errors, summary.status) == (5, 1, "failed")
    detail = traces.trace(sample.trace_id)
    assert detail is not None and len(detail.spans) == 5
    assert [s.status for s in detail.spans if s.span_id == rewritten.span_id] == ["dead"]


@pytest.fixture
def many(traces: SqlTraceStore) -> dict[str, Sample]:
    samples = {
        "ok": http_request(T0),
        "server_error": http_request(T0 + 10, http_status=500),
        "dead": retried_then_dead(T0 + 20, attempts=3),
        "cron": cron_fire(T0 + 40),
    }
    for span in samples["cron"].spans:
        span.flow = "maintenance"
    samples["cron"].spans[1].attrs["payload"] = '{"code":"50%_off"}'
    samples["server_error"].spans[1].attrs["payload"] = '{"code":"50xxoff"}'
    keep(traces, *samples.values())
    return samples


def test_each_filter_is_applied_by_the_store(traces: SqlTraceStore, many: dict[str, Sample]) -> None:
    tid = {name: sample.trace_id for name, sample in many.items()}
    assert ids(traces) == set(tid.values())
    assert ids(traces, status="failed") == {tid["server_error"], tid["dead"]}
    assert ids(traces, status="ok") == {tid["ok"], tid["cron"]}
    assert ids(traces, flow="maintenance") == {tid["cron"]}
    assert ids(traces, step="ChargeCard") == {tid["dead"]}
    assert ids(traces, since=T0 + 10, until=T0 + 20) == {tid["server_error"], tid["dead"]}
    assert ids(traces, min_duration_ms=2000) == {tid["dead"]}
    assert ids(traces, trace_id=tid["cron"]) == {tid["cron"]}
    assert ids(traces, message_id=many["dead"].span("enqueue").message_id) == {tid["dead"]}
    assert ids(traces, text="declined") == {tid["dead"]}
    assert ids(traces, text="cron Daily") == {tid["cron"]}
    assert ids(traces, text="50%_") == {tid["cron"]}
    assert ids(traces, text="_") == {tid["cron"]}
    assert ids(traces, status="failed", step="ProcessOrder") == {tid["server_error"]}


def test_pages_come_newest_first_and_total_counts_every_match(traces: SqlTraceStore) -> None:
    samples = [http_request(T0 + n) for n in range(7)]
    keep(traces, *samples)
    pages = [traces.traces(TraceQuery(page=n, per_page=3)) for n in (1, 2, 3, 4)]
    assert [len(p.traces) for p in pages] == [3, 3, 1, 0]
    assert {p.total for p in pages} == {7}
    listed = [s.trace_id for p in pages for s in p.traces]
    assert listed == [s.trace_id for s in reversed(samples)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (TraceQuery(per_page=0), "per_page"),
        (TraceQuery(per_page=MAX_PER_PAGE + 1), "per_page"),
        (TraceQuery(page=0), "page"),
        (TraceQuery(page=MAX_PAGE + 1), "page"),
        (TraceQuery(status="dead"), "status"),
        (TraceQuery(min_duration_ms=-1), "min_duration_ms"),
    ],
)
def test_a_bad_filter_raises_value_error_naming_it(traces: SqlTraceStore, query: TraceQuery, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        traces.traces(query)


def test_logs_by_level_step_trace_and_text_newest_first(traces: SqlTraceStore, many: dict[str, Sample]) -> None:
    errors = traces.logs(LogQuery(level="warning"))
    assert [line.message for line in errors] == [f"charge failed: attempt {n}" for n in (3, 2, 1)]
    assert {line.step for line in traces.logs(LogQuery(step="ProcessOrder"))} == {"ProcessOrder"}
    assert len(traces.logs(LogQuery(trace_id=many["ok"].trace_id))) == 3
    assert len(traces.logs(LogQuery(text="received"))) == 2
    assert len(traces.logs(LogQuery(level="DEBUG", per_page=2, page=3))) == 2
    with pytest.raises(ValueError, match="^level:"):
        traces.logs(LogQuery(level="LOUD"))


def test_step_counts_and_cron_fires(traces: SqlTraceStore, many: dict[str, Sample]) -> None:
    counts = traces.step_counts(T0 + 5)
    assert counts["ChargeCard"].to_json() == {"runs": 3, "ok": 0, "errors": 2, "dead": 1, "skipped": 0}
    assert counts["ProcessOrder"].runs == 1  # the run at T0 is before `since`
    keep(traces, cron_fire(T0 + 100), cron_fire(T0 + 200))
    fires = traces.cron_fires("DailyCleanup", limit=2)
    assert [f.started_at for f in fires] == [T0 + 200, T0 + 100]
    assert traces.cron_fires("NoSuchStep") == []


def test_prune_keeps_failures_longer_then_honours_the_cap(traces: SqlTraceStore) -> None:
    old_ok, old_dead = http_request(T0), retried_then_dead(T0, attempts=1)
    ancient_dead = retried_then_dead(T0 - 10_000, attempts=1)
    recent = [http_request(T0 + 5_000 + n) for n in range(3)]
    keep(traces, old_ok, old_dead, ancient_dead, *recent)
    removed = traces.prune(now=T0 + 6_000, ok_age=3_000, failed_age=9_000, max_traces=1_000)
    assert removed == 2
    assert ids(traces) == {old_dead.trace_id, *(s.trace_id for s in recent)}
    assert traces.trace(old_ok.trace_id) is None
    assert traces.logs(LogQuery(trace_id=old_ok.trace_id)) == []
    assert traces.spans_of_message(ancient_dead.span("enqueue").message_id or "") == []
    assert traces.prune(now=T0 + 6_000, ok_age=3_000, failed_age=9_000, max_traces=2) == 2
    assert ids(traces) == {s.trace_id for s in recent[1:]}


def test_two_writer_threads_lose_nothing(tmp_path: Path) -> None:
    store = SqliteTraceStore(tmp_path / "traces.db")
    trace_ids = [uuid.uuid4().hex for _ in range(WRITES)]
    gate = threading.Barrier(2)
    threads = [threading.Thread(target=write_batches, args=(store, trace_ids, gate, n)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_every_span_counted(store, trace_ids)
    store.close()


def test_two_processes_writing_the_same_traces_lose_nothing(postgres: PostgresServer) -> None:
    empty_postgres(postgres.url)
    store = PostgresTraceStore(postgres.url)  # not used before the fork: each child opens its own pool
    trace_ids = [uuid.uuid4().hex for _ in range(WRITES)]
    fork = multiprocessing.get_context("fork")
    gate = fork.Barrier(2)
    workers = [fork.Process(target=write_in_child, args=(store, trace_ids, gate, n)) for n in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert_every_span_counted(store, trace_ids)
    store.close()


#: Batches each writer writes, and the spans of each of the two traces a batch holds.
WRITES, PER_TRACE = 20, 20


def write_batches(store: SqlTraceStore, trace_ids: list[str], gate: Any, writer: int) -> None:
    """Batch ``k`` of both writers, written at the same moment, holds spans of traces ``k`` and ``k+1``
    (in opposite orders): batch ``k`` is the last to touch trace ``k``, so no later write could mend
    a summary it got wrong, and two writers locking traces in their own orders would deadlock."""
    for k in range(len(trace_ids)):
        pair = [trace_ids[k], trace_ids[(k + 1) % len(trace_ids)]]
        spans = [Span(trace_id, new_span_id(), None, "run", "process q", T0 + n, 1.0, step="S")
                 for trace_id in (pair if writer else pair[::-1]) for n in range(PER_TRACE)]  # fmt: skip
        gate.wait(30)
        store.write(spans, [])


def write_in_child(store: SqlTraceStore, trace_ids: list[str], gate: Any, writer: int) -> None:
    store.traces(TraceQuery())  # connected before the first batch, so both start writing together
    write_batches(store, trace_ids, gate, writer)
    store.close()


def assert_every_span_counted(store: SqlTraceStore, trace_ids: list[str]) -> None:
    """Each trace got PER_TRACE spans from each of the two writers' two batches that held it."""
    page = store.traces(TraceQuery(per_page=MAX_PER_PAGE))
    assert {summary.trace_id: summary.spans for summary in page.traces} == {t: 4 * PER_TRACE for t in trace_ids}
    details = [store.trace(trace_id) for trace_id in trace_ids]
    assert [len(detail.spans) if detail else 0 for detail in details] == [4 * PER_TRACE] * len(trace_ids)


def test_a_current_schema_runs_no_ddl_on_open(postgres: PostgresServer) -> None:
    url = postgres.url
    first = PostgresTraceStore(url)
    first.traces(TraceQuery())  # makes the tables, if no test did yet
    first.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE OR REPLACE FUNCTION refuse_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'DDL ran: %', tg_tag; END $$"
        )
        db.execute("CREATE EVENT TRIGGER refuse_ddl ON ddl_command_start EXECUTE FUNCTION refuse_ddl()")
        try:
            with pytest.raises(psycopg.errors.RaiseException):  # the trap works
                db.execute("CREATE TABLE IF NOT EXISTS conveyor_trace_spans (x int)")
            store = PostgresTraceStore(url)
            sample = http_request(T0)
            keep(store, sample)
            assert store.trace(sample.trace_id) is not None
            store.close()
        finally:
            db.execute("DROP EVENT TRIGGER refuse_ddl")


def test_sqlite_opens_lazily_in_wal_and_makes_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "traces.db"
    store = SqliteTraceStore(path)
    assert not path.parent.exists()
    keep(store, http_request(T0))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_open_trace_store_follows_the_state(tmp_path: Path) -> None:
    on_sqlite = open_trace_store(parse_config({"root": str(tmp_path)}))
    assert isinstance(on_sqlite, SqliteTraceStore) and on_sqlite.path == tmp_path / "var" / "traces.db"
    url = "postgresql://conveyor@localhost:5432/conveyor"
    assert isinstance(open_trace_store(parse_config({"state": {"url": url}})), PostgresTraceStore)
    clash = parse_config({"root": str(tmp_path), "tracing": {"path": "var/state.db"}})
    with pytest.raises(ValueError, match=r"\[tracing\] path"):
        open_trace_store(clash)
