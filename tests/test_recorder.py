"""The recorder: runs that last are shown as ``running`` in the store, then replaced by their end;
runs that end quickly cost no extra write (the real SQLite trace store, written from the recorder's thread)."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor.tracing.recorder import RUNNING_AFTER, Recorder
from conveyor.tracing.spans import LogLine, Span, new_span_id, new_trace_id
from conveyor.tracing.sqlite_store import SqliteTraceStore
from devtools.processes import wait_for


class WatchedStore(SqliteTraceStore):
    """The SQLite trace store, keeping the status of every span each write was given."""

    writes: list[list[tuple[str, str]]] = []

    def write(self, spans: list[Span], logs: list[LogLine]) -> None:
        WatchedStore.writes.append([(span.span_id, span.status) for span in spans])
        super().write(spans, logs)


def run_span(trace_id: str, parent: str, started_at: float) -> Span:
    return Span(trace_id, new_span_id(), parent, "run", "process q", started_at, step="RunJob", attempt=1)


def recorder_on(path: Path) -> Recorder:
    WatchedStore.writes = []
    return Recorder(lambda: WatchedStore(path), interval=0.05)


def test_a_quick_run_is_never_written_as_running(tmp_path: Path) -> None:
    recorder = recorder_on(tmp_path / "traces.db")
    trace_id = new_trace_id()
    quick = [run_span(trace_id, "p" * 16, time.time()) for _ in range(50)]
    for span in quick:
        recorder.running(span)
        span.duration_ms = 3.0
        recorder.span(span)
    assert recorder.flush()
    time.sleep(RUNNING_AFTER + 0.3)  # past the time a run still going would have been shown
    assert recorder.flush()
    statuses = [status for write in WatchedStore.writes for _, status in write]
    assert statuses == ["ok"] * 50
    recorder.close()


def test_a_run_that_lasts_is_shown_running_then_replaced_by_its_end(tmp_path: Path) -> None:
    recorder = recorder_on(tmp_path / "traces.db")
    reader = SqliteTraceStore(tmp_path / "traces.db")
    trace_id = new_trace_id()
    request = Span(trace_id, new_span_id(), None, "http", "POST /jobs", time.time() - 3, 2.0, step="StartJob")
    recorder.span(request)
    slow = run_span(trace_id, request.span_id, time.time() - 2)  # begun two seconds ago, still going
    recorder.running(slow)

    def shown() -> Span | None:
        detail = reader.trace(trace_id)
        return next((s for s in detail.spans if s.span_id == slow.span_id), None) if detail else None

    running = wait_for(shown, 10, what="the slow run, shown as running")
    assert running.status == "running" and running.duration_ms >= 2000
    assert (slow.status, slow.duration_ms) == ("ok", 0.0)  # the recorder wrote a copy: the handler's span is untouched

    # It ends, in a batch with a quick run of another trace: one row for it, now finished, and the other new.
    other = run_span(new_trace_id(), "p" * 16, time.time())
    other.duration_ms, slow.duration_ms = 4.0, 2500.0
    recorder.span(other)
    recorder.span(slow)
    assert recorder.flush()
    detail = reader.trace(trace_id)
    assert detail is not None
    assert [(s.span_id, s.status, s.duration_ms) for s in detail.spans if s.kind == "run"] == [
        (slow.span_id, "ok", 2500.0)
    ]
    assert detail.summary.spans == 2 and detail.summary.status == "ok"
    assert reader.trace(other.trace_id) is not None
    # Only the span shown before took the replacing write, alone.
    assert [(slow.span_id, "ok")] in WatchedStore.writes
    recorder.close()
    reader.close()
