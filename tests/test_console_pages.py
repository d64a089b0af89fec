"""The console's pages and JSON API on a real SqliteTraceStore: flows from the wiring, traces with
server-side filters, one trace's waterfall, logs, escaping, and a 4xx for every bad input."""

from __future__ import annotations

import re
import time

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conveyor import Registry, cron, http, queue, state, step
from conveyor.console import console_app
from conveyor.errors import ConfigError
from conveyor.gateway import build_app
from conveyor.tracing.spans import LogLine, Span, new_span_id
from conveyor.tracing.sqlite_store import SqliteTraceStore
from tests import trace_samples
from tests.helpers import memory_runtime

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class Purchase(BaseModel):
    amount: float


def big(purchase, ctx) -> bool:
    return purchase.amount > 1000


@pytest.fixture
def registry():
    registry = Registry()
    none = lambda data, ctx: None  # noqa: E731
    step(name="Buy", flows=["shop"], triggers=[http("POST", "/buy")], enqueues=["charge"], registry=registry)(none)
    step(name="Charge", flows=["shop"], triggers=[queue("charge", input=Purchase, condition=big)],
         enqueues=["notify"], dead_letter_queue="charge.failed", registry=registry)(none)  # fmt: skip
    step(name="Notify", flows=["mail"], triggers=[queue("notify")], registry=registry)(none)
    step(name="HandleFailedCharge", flows=["shop"], triggers=[queue("charge.failed")], registry=registry)(none)
    step(name="Nightly", flows=["shop"], triggers=[cron("0 3 * * *")], registry=registry)(none)
    step(name="OnPaid", flows=["shop"], triggers=[state("purchases", becomes={"status": "paid"})],
         registry=registry)(none)  # fmt: skip
    return registry


@pytest.fixture
def store(tmp_path):
    traces = SqliteTraceStore(tmp_path / "traces.db")
    yield traces
    traces.close()


@pytest.fixture
def runtime(tmp_path, registry):
    return memory_runtime(tmp_path, registry)


@pytest.fixture
def client(runtime, store):
    return TestClient(Starlette(routes=[Mount("/_console", app=console_app(runtime, store))]))


def write(store, *samples):
    store.write([s for sample in samples for s in sample.spans], [line for sample in samples for line in sample.logs])


def run_span(step_name: str, status: str, at: float) -> Span:
    return Span(new_span_id() * 2, new_span_id(), None, "run", f"process {step_name}", at, 3.0, status=status,
                step=step_name, flow="shop", message_id=new_span_id(), attempt=1)  # fmt: skip


def test_flow_diagram_is_drawn_from_the_wiring_with_live_counts(client, store):
    now = time.time()
    store.write([run_span("Charge", "ok", now - 60), run_span("Charge", "dead", now - 30)], [])
    page = client.get("/_console/flows/shop")
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    for label in ("POST /buy", "Buy", "charge", "Charge", "notify", "Notify", "charge.failed", "HandleFailedCharge",
                  "Nightly", "0 3 * * *", "state purchases", "OnPaid"):  # fmt: skip
        assert f">{label}<" in svg or f": {label}<" in svg, label
    assert "if big" in svg  # the condition marks its edge
    assert "status=&#39;paid&#39;" in svg
    assert 'class="node dead-letter"' in svg
    assert 'class="node step foreign"' in svg  # Notify lives in the flow "mail"
    assert "runs 2 · err 0 · dead 1 · q -" in svg
    assert "Queue depths are unknown (-)" in page.text  # no RabbitMQ here: a note, not a 500


def test_a_new_step_appears_on_reload_and_flows_are_listed(client, registry):
    step(name="Refund", flows=["shop"], triggers=[queue("refund")], registry=registry)(lambda d, c: None)
    assert ">Refund<" in client.get("/_console/flows/shop").text
    index = client.get("/_console/flows")
    assert 'href="/_console/flows/shop"' in index.text and 'href="/_console/flows/mail"' in index.text


def test_unknown_flow_is_a_404_page(client):
    page = client.get("/_console/flows/nope")
    assert page.status_code == 404
    assert "No flow is called &#39;nope&#39;" in page.text and "shop" in page.text


def test_trace_list_shows_traces_and_the_filters_reach_the_store(client, store):
    now = time.time()
    ok = trace_samples.http_request(now - 7200)
    dead = trace_samples.retried_then_dead(now - 60)
    write(store, ok, dead)
    listing = client.get("/_console/traces")
    assert ok.trace_id in listing.text and dead.trace_id in listing.text
    failed = client.get("/_console/traces?status=failed")
    assert dead.trace_id in failed.text and ok.trace_id not in failed.text
    recent = client.get("/_console/traces?since=1h")
    assert dead.trace_id in recent.text and ok.trace_id not in recent.text
    by_step = client.get("/_console/api/traces?step=ProcessOrder").json()
    assert [t["traceId"] for t in by_step["traces"]] == [ok.trace_id]
    by_message = client.get(f"/_console/api/traces?message_id={dead.span('enqueue').message_id}").json()
    assert [t["traceId"] for t in by_message["traces"]] == [dead.trace_id]
    paged = client.get("/_console/api/traces?per_page=1&page=2").json()
    assert paged["total"] == 2 and [t["traceId"] for t in paged["traces"]] == [ok.trace_id]
    assert client.get("/_console/traces?page=500").status_code == 200  # past the end: an empty page


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=sideways", "status"), ("since=last+tuesday", "since"), ("until=99x", "until"), ("page=0", "page"),
     ("page=99999999999", "page"), ("per_page=5000", "per_page"), ("min_duration=abc", "min_duration"),
     ("since=1m&until=2h", "until")],
)  # fmt: skip
def test_nonsense_filters_are_a_400_naming_the_field(client, store, query, field):
    page = client.get(f"/_console/traces?{query}")
    assert page.status_code == 400
    assert field in page.text
    api = client.get(f"/_console/api/traces?{query}")
    assert api.status_code == 400
    assert api.json()["field"] == field
    if field not in ("status", "min_duration"):  # filters of traces only
        assert client.get(f"/_console/api/logs?{query}").json()["field"] == field


def test_trace_page_draws_every_attempt_with_its_error_events_logs_and_replay(client, store):
    dead = trace_samples.retried_then_dead(time.time() - 5)
    write(store, dead)
    page = client.get(f"/_console/traces/{dead.trace_id}")
    assert page.status_code == 200
    runs = [s for s in dead.spans if s.kind == "run"]
    for run in runs:
        assert f'id="span-{run.span_id}"' in page.text
        assert run.error in page.text
    assert page.text.count('class="bar wait"') == 3  # each run's queue wait, apart from its run time
    assert "retry_scheduled" in page.text and "dead_lettered" in page.text
    assert "Traceback (most recent call last)" in page.text
    assert "charge failed: attempt 2" in page.text  # logs inline
    last = runs[-1]
    link = f"/_console/dead-letters/ChargeCard/{last.message_id}"
    assert f'href="{link}"' in page.text
    form = re.search(rf'<form method="post" action="{link}/replay"[^>]*>\s*<input type="hidden" name="csrf_token" '
                     r'value="([0-9a-f]{64})">', page.text)  # fmt: skip
    assert form is not None
    assert 'data-live="1"' in page.text  # young: the page polls for new spans
    fragment = client.get(f"/_console/traces/{dead.trace_id}?fragment=1")
    assert "<html" not in fragment.text and f'id="span-{last.span_id}"' in fragment.text


def test_an_old_trace_is_not_polled_and_shows_its_payload_size(client, store):
    sample = trace_samples.http_request(time.time() - 3600, payload_size=5000)
    write(store, sample)
    page = client.get(f"/_console/traces/{sample.trace_id}")
    assert "data-live" not in page.text
    assert f"payload ({sample.spans[0].attrs['payload_size']} characters, first" in page.text


def test_a_run_still_going_is_drawn_running_and_one_whose_worker_stopped_as_lost(client, store):
    now = time.time()
    going = run_span("Charge", "running", now - 2.5)
    going.duration_ms = 2000.0  # as the recorder wrote it half a second ago
    stopped = run_span("Charge", "running", now - 300)  # its worker last wrote it 299 s ago
    stopped.duration_ms = 1000.0
    store.write([going, stopped], [])

    page = client.get(f"/_console/traces/{going.trace_id}")
    assert 'class="span run status-running"' in page.text and "running for 2000 ms" in page.text
    assert 'data-live="1"' in page.text and "No word from its worker" not in page.text
    lost = client.get(f"/_console/traces/{stopped.trace_id}")
    assert 'class="span run status-lost"' in lost.text and '<span class="badge lost">lost</span>' in lost.text
    assert "No word from its worker since" in lost.text


def test_unknown_trace_is_a_404_page_and_a_json_404(client):
    assert client.get("/_console/traces/0123456789abcdef").status_code == 404
    assert client.get("/_console/traces/" + "x" * 300).status_code == 404
    api = client.get("/_console/api/traces/0123456789abcdef")
    assert api.status_code == 404 and "0123456789abcdef" in api.json()["error"]
    assert client.get("/_console/api/nothing").status_code == 404
    assert client.get("/_console/nothing").status_code == 404


def test_payloads_errors_and_log_lines_are_shown_escaped(client, store):
    sample = trace_samples.http_request(time.time() - 10)
    sample.spans[0].name = f"POST /x{SCRIPT}"
    sample.spans[0].attrs["payload"] = f'{{"note": "{SCRIPT}"}}'
    sample.spans[1].status, sample.spans[1].error = "error", SCRIPT
    sample.logs.append(LogLine(sample.trace_id, sample.spans[0].span_id, time.time(), "WARNING", "t", SCRIPT,
                               f"Step{SCRIPT}", {"field": SCRIPT}))  # fmt: skip
    write(store, sample)
    for path in (f"/_console/traces/{sample.trace_id}", "/_console/traces", "/_console/logs",
                 f"/_console/logs?text={SCRIPT}", f"/_console/traces?text={SCRIPT}"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 200, path
        assert SCRIPT not in page.text, path
    assert ESCAPED in client.get(f"/_console/traces/{sample.trace_id}").text
    assert ESCAPED in client.get("/_console/logs").text


def test_logs_page_filters_by_minimum_level_and_links_each_line_to_its_span(client, store):
    dead = trace_samples.retried_then_dead(time.time() - 30)
    ok = trace_samples.http_request(time.time() - 20)
    write(store, dead, ok)
    page = client.get("/_console/logs?level=warning")
    assert page.status_code == 200
    assert "charge failed: attempt 1" in page.text
    assert all(line.message not in page.text for line in ok.logs)  # INFO lines
    line = dead.logs[0]
    assert f'href="/_console/traces/{dead.trace_id}#span-{line.span_id}"' in page.text
    api = client.get(f"/_console/api/logs?trace_id={ok.trace_id}").json()
    assert {entry["message"] for entry in api["logs"]} == {line.message for line in ok.logs}
    assert client.get("/_console/logs?level=LOUD").status_code == 400


def test_without_tracing_the_trace_pages_say_how_to_turn_it_on(runtime):
    client = TestClient(Starlette(routes=[Mount("/_console", app=console_app(runtime, None))]))
    assert client.get("/_console/flows/shop").status_code == 200
    for path in ("/_console/traces", "/_console/logs", "/_console/api/traces"):
        answer = client.get(path)
        assert answer.status_code == 503 and "[tracing] enabled = true" in answer.text


def test_the_gateway_mounts_the_console_and_keeps_its_prefix_from_steps(tmp_path, runtime):
    with TestClient(build_app(runtime)) as gateway:
        assert gateway.get("/_console/flows").status_code == 200
        assert gateway.get("/_console/static/console.css").status_code == 200
    registry = Registry()
    step(name="Sneaky", triggers=[http("GET", "/_console/flows")], registry=registry)(lambda r, c: None)
    (tmp_path / "other").mkdir()
    with pytest.raises(ConfigError, match="reserved for the web console"):
        build_app(memory_runtime(tmp_path / "other", registry))
