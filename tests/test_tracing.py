"""The span model, in process: what one request, its messages, their attempts and a cron fire leave
in the trace store (the real SQLite trace store; the in-process broker)."""

from __future__ import annotations

import pytest

from conveyor.testing import FlowEnvironment
from conveyor.tracing.recorder import RUNNING_AFTER
from conveyor.tracing.spans import Span
from devtools.processes import wait_for
from tests.tracing_flow import steps

SETTINGS = """
[steps.RunJob]
max_retries = 2
backoff = "fixed"
retry_delay = 10
dead_letter_queue = "job.dead"
"""


@pytest.fixture
def flow():
    with FlowEnvironment("tests.tracing_flow", settings=SETTINGS) as running:
        yield running


def post(flow, **job) -> str:
    answer = flow.http.post("/jobs", json=job)
    assert answer.status_code == 202, answer.text
    flow.join(fail_fast=False)
    trace_id = answer.headers["x-request-id"]
    assert answer.json()["traceId"] == trace_id  # the id a user pastes into the console
    return trace_id


def one(spans: list[Span], **where) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, (where, [(s.kind, s.step, s.status) for s in spans])
    return found[0]


def test_a_request_its_fan_out_and_state_trigger_are_one_tree(flow):
    trace = flow.trace(post(flow, id="j1"))
    spans = trace.spans
    request = one(spans, kind="http")
    assert (request.name, request.step, request.attrs["http_status"]) == ("POST /jobs", "StartJob", 202)
    assert request.parent_id is None and '"id":"j1"' in request.attrs["payload"]

    # One enqueue per subscriber of job.started, both children of the request.
    to_run = one(spans, kind="enqueue", step="RunJob")
    to_audit = one(spans, kind="enqueue", step="AuditJob")
    assert to_run.parent_id == to_audit.parent_id == request.span_id
    assert to_run.attrs["source"] == "http" and to_run.attrs["topic"] == "job.started"

    run = one(spans, kind="run", step="RunJob")
    assert (run.parent_id, run.status, run.attempt) == (to_run.span_id, "ok", 1)
    assert run.queue_delay_ms is not None and run.queue_delay_ms >= 0

    # RunJob's write fired JobDone: that enqueue is a child of the run that wrote the state.
    to_done = one(spans, kind="enqueue", step="JobDone")
    assert (to_done.parent_id, to_done.attrs["source"], to_done.attrs["state_group"]) == (run.span_id, "state", "jobs")
    assert one(spans, kind="run", step="JobDone").parent_id == to_done.span_id

    assert trace.summary.status == "ok" and trace.summary.spans == len(spans) == 7
    # Each step's log lines are kept with its span.
    logs = {(line.step, line.message) for line in trace.logs}
    assert ("StartJob", "Job accepted") in logs and ("RunJob", "Running job") in logs
    assert {line.span_id for line in trace.logs if line.message == "Running job"} == {run.span_id}


def test_a_message_retried_then_dead_has_one_span_per_attempt_each_with_its_error(flow):
    trace = flow.trace(post(flow, id="j2", fail=True))
    runs = sorted((s for s in trace.spans if s.kind == "run" and s.step == "RunJob"), key=lambda s: s.attempt or 0)
    assert [(s.attempt, s.status) for s in runs] == [(1, "error"), (2, "error"), (3, "dead")]
    assert len({s.parent_id for s in runs}) == 1  # siblings under the one enqueue
    for span in runs:
        assert span.error_type == "RuntimeError" and span.error == "job j2 broke"
        assert "Traceback" in (span.traceback or "") and "run_job" in (span.traceback or "")
    # A retry's wait starts when its backoff ends, not at the first enqueue: the bars come in attempt order.
    waited_from = [s.started_at - (s.queue_delay_ms or 0) / 1000 for s in runs]
    assert waited_from[1] >= runs[0].started_at and waited_from[2] >= runs[1].started_at
    assert [e.name for e in runs[0].events] == ["retry_scheduled"]
    assert runs[0].events[0].attrs["delay_ms"] == 10
    assert [e.name for e in runs[2].events] == ["dead_lettered"]
    assert runs[2].events[0].attrs["topic"] == "job.dead"

    # The dead-letter record went to JobFailed, in the same trace, as a child of the last attempt.
    to_sink = one(trace.spans, kind="enqueue", step="JobFailed")
    assert (to_sink.parent_id, to_sink.attrs["source"]) == (runs[2].span_id, "dead-letter")
    assert one(trace.spans, kind="run", step="JobFailed").status == "ok"
    assert trace.summary.status == "failed"


def test_a_long_run_shows_as_running_while_it_runs_then_as_it_ended(flow):
    steps.RELEASE.clear()
    answer = flow.http.post("/jobs", json={"id": "slow", "hold": True})
    trace_id = answer.headers["x-request-id"]
    store = flow.runtime.traces()

    def running() -> Span | None:
        detail = store.trace(trace_id)
        runs = [s for s in detail.spans if s.kind == "run" and s.step == "RunJob"] if detail else []
        return runs[0] if runs and runs[0].status == "running" else None

    try:
        shown = wait_for(running, 15, what="RunJob shown as running")
        assert shown.duration_ms >= RUNNING_AFTER * 1000 and shown.attempt == 1
    finally:
        steps.RELEASE.set()
    flow.join()
    trace = flow.trace(trace_id)
    runs = [s for s in trace.spans if s.kind == "run" and s.step == "RunJob"]
    assert [(s.span_id, s.status) for s in runs] == [(shown.span_id, "ok")]  # the same row, now finished
    assert runs[0].duration_ms > shown.duration_ms
    assert trace.summary.spans == len(trace.spans) and trace.summary.status == "ok"


def test_a_message_its_condition_skips_is_a_skipped_span(flow):
    trace = flow.trace(post(flow, id="j3", keep=False))
    audit = one(trace.spans, kind="run", step="AuditJob")
    assert audit.status == "skipped" and [e.name for e in audit.events] == ["condition_false"]
    assert trace.summary.status == "ok"


def test_a_cron_fire_starts_a_trace_of_its_own(flow):
    message_id = flow.fire("Nightly")
    flow.join()
    flow.runtime.recorder.flush()
    [cron_trace] = flow.runtime.traces().traces(_query(step="Nightly")).traces
    trace = flow.trace(cron_trace.trace_id)
    fire = one(trace.spans, kind="cron")
    assert (fire.name, fire.parent_id, fire.attrs.get("by_hand")) == ("cron Nightly", None, True)
    to_nightly = one(trace.spans, kind="enqueue", step="Nightly")
    assert (to_nightly.parent_id, to_nightly.attrs["source"], to_nightly.message_id) == (
        fire.span_id,
        "cron",
        message_id,
    )
    run = one(trace.spans, kind="run", step="Nightly")
    assert one(trace.spans, kind="enqueue", step="RunJob").parent_id == run.span_id


def test_tracing_off_records_nothing():
    with FlowEnvironment(
        "tests.tracing_flow", settings="[tracing]\nenabled = false\n[metrics]\nenabled = false"
    ) as off:
        answer = off.http.post("/jobs", json={"id": "j4"})
        off.join()
        assert answer.status_code == 202
        assert off.runtime.recorder is None and off.runtime.traces() is None


def _query(**fields):
    from conveyor.tracing.queries import TraceQuery

    return TraceQuery(**fields)


def test_the_schedulers_pruning_keeps_failures_longer_as_config_toml_says(tmp_path):
    from conveyor.config import parse_config
    from conveyor.scheduling.upkeep import add_upkeep_jobs
    from conveyor.tracing.queries import TraceQuery
    from conveyor.tracing.retention import prune_traces
    from conveyor.tracing.sqlite_store import SqliteTraceStore
    from tests.trace_samples import http_request, retried_then_dead

    settings = parse_config({"tracing": {"retention_hours": 1, "failed_retention_hours": 48}}).tracing
    store = SqliteTraceStore(tmp_path / "traces.db")
    now = 1_800_000_000.0
    old_ok, old_failed = http_request(now - 3 * 3600), retried_then_dead(now - 3 * 3600)
    fresh = http_request(now - 60)
    for sample in (old_ok, old_failed, fresh):
        store.write(sample.spans, sample.logs)
    assert prune_traces(store, settings, now=now) == 1
    kept = {t.trace_id for t in store.traces(TraceQuery()).traces}
    assert kept == {old_failed.trace_id, fresh.trace_id}
    store.close()

    # Every scheduler runs it among its upkeep jobs (unless tracing is off).
    from apscheduler.schedulers.background import BackgroundScheduler

    with FlowEnvironment("tests.tracing_flow") as flow:
        scheduler = BackgroundScheduler()
        add_upkeep_jobs(scheduler, flow.runtime)
        assert "conveyor.prune-traces" in {job.id for job in scheduler.get_jobs()}


def test_async_handlers_enqueue_as_children_of_their_request_and_run(flow):
    answer = flow.http.post("/async-jobs", json={"id": "a1"})
    assert answer.status_code == 202
    flow.join()
    trace_id = answer.headers["x-request-id"]
    assert answer.headers["x-trace-id"] == trace_id
    spans = flow.trace(trace_id).spans
    request = one(spans, kind="http")
    to_later = one(spans, kind="enqueue", step="LaterJob")
    assert (to_later.parent_id, to_later.attrs["source"]) == (request.span_id, "http")
    later = one(spans, kind="run", step="LaterJob")
    to_last = one(spans, kind="enqueue", step="LastJob")
    assert (to_last.parent_id, to_last.attrs["source"]) == (later.span_id, "step")
    assert one(spans, kind="run", step="LastJob").parent_id == to_last.span_id
    # The async handler's state write fired LaterSaved: a child of that run too.
    to_saved = one(spans, kind="enqueue", step="LaterSaved")
    assert (to_saved.parent_id, to_saved.attrs["source"]) == (later.span_id, "state")


def test_a_client_trace_id_and_a_w3c_traceparent_are_followed(flow):
    chosen = flow.http.post("/jobs", json={"id": "c1"}, headers={"x-trace-id": "my-own-trace"})
    assert chosen.headers["x-trace-id"] == "my-own-trace" != chosen.headers["x-request-id"]
    parent = "4bf92f3577b34da6a3ce929d0e0e4736"
    w3c = flow.http.post("/jobs", json={"id": "c2"}, headers={"traceparent": f"00-{parent}-00f067aa0ba902b7-01"})
    assert w3c.headers["x-trace-id"] == w3c.headers["x-request-id"] == parent
    flow.join()
    assert one(flow.trace("my-own-trace").spans, kind="http").parent_id is None
    assert one(flow.trace(parent).spans, kind="http").parent_id == "00f067aa0ba902b7"


def test_a_step_whose_path_starts_like_the_gateways_own_is_traced_and_the_gateways_own_are_not(flow):
    step = flow.http.get("/healthz")
    assert step.status_code == 200
    assert one(flow.trace(step.headers["x-trace-id"]).spans, kind="http").name == "GET /healthz"
    for own in ("/health", "/openapi.json", "/_console/traces"):
        assert "x-trace-id" not in flow.http.get(own).headers, own
