"""GET /metrics: spans counted by real processes into one directory, summed by the serving process.

The processes that export spans are real subprocesses (each its own pid and files, as gateway,
workers and scheduler are); the scrape goes through ``metrics_app`` with Starlette's TestClient.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from conveyor import Context, Registry, queue, step
from conveyor.config import load_config
from conveyor.metrics import metrics_app
from conveyor.metrics.multiprocess import ENV, sweep
from conveyor.runtime import Runtime
from devtools.processes import purge, wait_for
from tests.helpers import memory_runtime

ROOT = Path(__file__).resolve().parent.parent

#: A process of the system: records spans through MetricsSink, says "ready", and runs until its stdin closes.
CHILD = """
import json, sys
from conveyor.config import load_config
from conveyor.metrics import MetricsSink
from conveyor.tracing.spans import Span, SpanEvent

sink = MetricsSink(load_config(sys.argv[1]))
spans = [Span(**{**d, "events": [SpanEvent(**e) for e in d.get("events", [])]}) for d in json.loads(sys.argv[2])]
sink.export(spans)
sink.accounted(written=len(spans), dropped=int(sys.argv[3]))
print("ready", flush=True)
sys.stdin.readline()
"""


def child_env() -> dict[str, str]:
    """The environment of a process started on its own: no metrics directory inherited from this one."""
    return {key: value for key, value in os.environ.items() if key != ENV}


class Child:
    def __init__(self, config: Path, spans: list[dict[str, Any]], dropped: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config), json.dumps(spans), str(dropped)],
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> Child:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", self.process.communicate()[1]
        return self

    def stop(self) -> None:
        self.process.communicate("\n", timeout=30)
        assert self.process.returncode == 0


def span(kind: str, **fields: Any) -> dict[str, Any]:
    trace_id = uuid.uuid4().hex
    return {
        "trace_id": trace_id,
        "span_id": uuid.uuid4().hex[:16],
        "parent_id": None,
        "kind": kind,
        "name": kind,
        "started_at": 1_800_000_000.0,
        "message_id": str(uuid.uuid4()),
        **fields,
    }


def http(path_id: str, status: int = 200, ms: float = 30.0) -> dict[str, Any]:
    return span(
        "http",
        name="GET /orders/{id}",
        duration_ms=ms,
        attrs={"route": "/orders/{id}", "method": "GET", "http_status": status, "path": f"/orders/{path_id}"},
    )


def process_spans(n: int) -> list[dict[str, Any]]:
    """What one process records: ``n`` of each kind, with ids that must never become labels."""
    spans = []
    for i in range(n):
        spans.append(http(f"ord-{i}"))
        spans.append(span("enqueue", step="ProcessOrder", attrs={"queue": "conveyor.o.ProcessOrder", "source": "http"}))
        spans.append(span("run", step="ProcessOrder", duration_ms=20, queue_delay_ms=5, attempt=1))
    retried = [{"name": "retry_scheduled", "at": 1.0, "attrs": {"delay_ms": 1000}}]
    spans.append(span("run", step="ProcessOrder", status="error", duration_ms=2000, attempt=1, events=retried))
    dead = [{"name": "dead_lettered", "at": 2.0, "attrs": {"queue": "conveyor.o.ProcessOrder.XQ"}}]
    spans.append(span("run", step="ProcessOrder", status="dead", duration_ms=10, attempt=2, events=dead))
    spans.append(span("enqueue", step="ProcessOrder", attrs={"queue": "conveyor.o.ProcessOrder", "source": "replay"}))
    spans.append(span("run", step="Notify", status="skipped", duration_ms=1, queue_delay_ms=2))
    return spans


def cron(started_at: float, lateness: float, status: str = "ok") -> dict[str, Any]:
    return span(
        "cron", step="DailyCleanup", status=status, started_at=started_at, attrs={"scheduled_at": started_at - lateness}
    )


@pytest.fixture
def config_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "config.toml"
    path.write_text('[broker]\nkind = "memory"\n[state]\npath = "state.db"\n')
    before = os.environ.get(ENV)
    yield path
    # This process's directory stays where it is; later tests' processes must not inherit it.
    if before is None:
        os.environ.pop(ENV, None)
    else:
        os.environ[ENV] = before


def serve(config_path: Path) -> tuple[TestClient, Runtime]:
    runtime = memory_runtime(config_path.parent, Registry())
    return TestClient(metrics_app(runtime)), runtime


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, by name and labels; the text must parse as Prometheus's format."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_two_processes_are_summed_by_one_scrape(config_path: Path) -> None:
    client, runtime = serve(config_path)  # the gateway: runs while the workers come and go
    a_spans = [*process_spans(3), cron(1_800_000_100.0, 0.25)]
    b_spans = [*process_spans(2), cron(1_800_000_200.0, 1.5), cron(1_800_000_300.0, 0.1, status="error")]
    a = Child(config_path, a_spans, dropped=4)
    b = Child(config_path, b_spans, dropped=1)
    a.ready()
    b.ready()

    samples = scrape(client)
    text = client.get("/").text

    route = {"route": "/orders/{id}", "method": "GET"}
    assert value(samples, "conveyor_http_requests_total", **route, status="200") == 5
    assert value(samples, "conveyor_http_request_duration_seconds_count", **route) == 5
    assert value(samples, "conveyor_http_request_duration_seconds_sum", **route) == pytest.approx(0.15)
    assert value(samples, "conveyor_http_request_duration_seconds_bucket", **route, le="0.025") == 0
    assert value(samples, "conveyor_http_request_duration_seconds_bucket", **route, le="0.05") == 5
    enqueued = {"step": "ProcessOrder", "queue": "conveyor.o.ProcessOrder"}
    assert value(samples, "conveyor_messages_enqueued_total", **enqueued, source="http") == 5
    assert value(samples, "conveyor_messages_enqueued_total", **enqueued, source="replay") == 2
    assert value(samples, "conveyor_step_runs_total", step="ProcessOrder", outcome="ok") == 5
    assert value(samples, "conveyor_step_runs_total", step="ProcessOrder", outcome="error") == 2
    assert value(samples, "conveyor_step_runs_total", step="ProcessOrder", outcome="dead") == 2
    assert value(samples, "conveyor_step_runs_total", step="Notify", outcome="skipped") == 2
    assert value(samples, "conveyor_step_run_duration_seconds_count", step="ProcessOrder") == 9
    assert value(samples, "conveyor_step_run_duration_seconds_bucket", step="ProcessOrder", le="1.0") == 7
    assert value(samples, "conveyor_step_run_duration_seconds_count", step="Notify") is None  # skipped: no handler ran
    assert value(samples, "conveyor_step_queue_delay_seconds_count", step="ProcessOrder") == 5
    assert value(samples, "conveyor_step_queue_delay_seconds_sum", step="Notify") == pytest.approx(0.004)
    assert value(samples, "conveyor_step_retries_total", step="ProcessOrder") == 2
    assert value(samples, "conveyor_dead_letters_total", step="ProcessOrder") == 2
    assert value(samples, "conveyor_dead_letters_replayed_total", step="ProcessOrder") == 2
    assert value(samples, "conveyor_cron_runs_total", job="DailyCleanup", outcome="ok") == 2
    assert value(samples, "conveyor_cron_runs_total", job="DailyCleanup", outcome="error") == 1
    assert value(samples, "conveyor_cron_lateness_seconds_count", job="DailyCleanup") == 3
    assert value(samples, "conveyor_cron_lateness_seconds_sum", job="DailyCleanup") == pytest.approx(1.85)
    # The latest success of either process (the later error does not count).
    assert value(samples, "conveyor_cron_last_success_timestamp_seconds", job="DailyCleanup") == 1_800_000_200.0
    assert value(samples, "conveyor_trace_spans_written_total") == len(a_spans) + len(b_spans)
    assert value(samples, "conveyor_trace_spans_dropped_total") == 5

    # Labels are templates and names, never a raw path, a message id or a trace id.
    assert "/orders/ord-" not in text
    for recorded in a_spans + b_spans:
        assert recorded["message_id"] not in text and recorded["trace_id"] not in text
    assert {name for (name, labels) in samples for key, _ in labels if key == "pid"} == set()

    # The workers end; their files are folded into the archive by the next sweep, and no total moves.
    a.stop()
    b.stop()
    sweep(runtime.config.metrics_path())
    assert scrape(client) == samples
    left = sorted(p.name for p in runtime.config.metrics_path().iterdir())
    assert not any(str(child.process.pid) in name for child in (a, b) for name in left), left
    assert "counter_archive.db" in left and "histogram_archive.db" in left

    # A worker started later adds to the archived totals.
    Child(config_path, [http("x")]).ready().stop()
    assert value(scrape(client), "conveyor_http_requests_total", **route, status="200") == 6


def test_a_start_keeps_running_processes_files_and_clears_ended_ones(config_path: Path) -> None:
    # Yesterday's system: it counted, then every process stopped.
    Child(config_path, [http("old"), http("old")]).ready().stop()
    # Today a worker starts alone (nothing else runs): it begins from zero.
    worker = Child(config_path, [http("new")]).ready()
    # The gateway starts while that worker runs: it keeps the worker's files.
    client, _ = serve(config_path)
    route = {"route": "/orders/{id}", "method": "GET", "status": "200"}
    assert value(scrape(client), "conveyor_http_requests_total", **route) == 1
    worker.stop()


def test_a_late_import_of_prometheus_client_is_refused() -> None:
    code = (
        "import prometheus_client\n"
        "from conveyor.config import parse_config\n"
        "from conveyor.metrics import MetricsSink\n"
        "import tempfile\n"
        "MetricsSink(parse_config({'root': tempfile.mkdtemp()}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "MetricsSetupError" in result.stderr and "imported before" in result.stderr


def test_conveyor_and_dramatiq_leave_prometheus_client_unimported() -> None:
    code = (
        "import sys\n"
        "import dramatiq, dramatiq.cli, dramatiq.middleware, dramatiq.brokers.rabbitmq\n"
        "import conveyor.metrics, conveyor.runtime, gateway, scheduler\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_only_get_is_answered(config_path: Path) -> None:
    client, _ = serve(config_path)
    answer = client.post("/", content=b"x")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert client.head("/").status_code == 200


def test_a_label_takes_a_bounded_number_of_values(config_path: Path) -> None:
    client, _ = serve(config_path)
    raw = [span("http", attrs={"route": f"/pets/{i}", "method": "BREW", "http_status": 200}) for i in range(350)]
    Child(config_path, raw).ready().stop()
    samples = scrape(client)
    routes = {dict(labels)["route"] for name, labels in samples if name == "conveyor_http_requests_total"}
    assert len(routes) == 301 and "other" in routes
    assert value(samples, "conveyor_http_requests_total", route="other", method="other", status="200") == 50


def test_queue_depths_are_absent_while_rabbitmq_cannot_be_reached(tmp_path: Path, config_path: Path) -> None:
    config_path.write_text(
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/"\nmanagement_url = "http://127.0.0.1:1/"\n'
        '[state]\npath = "state.db"\n'
    )
    registry = Registry()
    declare_probe(registry)
    runtime = Runtime(load_config(config_path), registry)
    answer = TestClient(metrics_app(runtime)).get("/")
    assert answer.status_code == 200
    assert "conveyor_queue_messages" not in answer.text


class Probe(BaseModel):
    id: str


def declare_probe(registry: Registry) -> None:
    @step(name="MetricsProbe", triggers=[queue("test.metrics-probe", input=Probe)], registry=registry)
    def probe(event: Probe, ctx: Context) -> None:
        pass


def test_queue_depths_are_read_at_scrape_time(rabbitmq: Any, config_path: Path) -> None:
    name = f"m{uuid.uuid4().hex[:8]}"
    config_path.write_text(
        f'[project]\nname = "{name}"\n[broker]\nurl = "{rabbitmq.url}"\nmanagement_url = "{rabbitmq.management_url}"\n'
        '[state]\npath = "state.db"\n'
    )
    registry = Registry()
    declare_probe(registry)
    runtime = Runtime(load_config(config_path), registry)
    try:
        runtime.declare_queues()
        for _ in range(2):
            runtime.publisher.send("MetricsProbe", {"id": "x"}, topic="test.metrics-probe")
        client = TestClient(metrics_app(runtime, queue_cache_seconds=0))
        queue_name = runtime.actors["MetricsProbe"].queue_name

        def ready() -> float | None:
            labels = {"step": "MetricsProbe", "queue": queue_name, "state": "ready"}
            return value(scrape(client), "conveyor_queue_messages", **labels)

        # RabbitMQ's management API samples queues every few seconds.
        wait_for(lambda: ready() == 2, timeout=30, interval=0.5)
        samples = scrape(client)
        assert value(samples, "conveyor_queue_messages", step="MetricsProbe", queue=queue_name, state="dead") == 0
        assert value(samples, "conveyor_queue_consumers", step="MetricsProbe", queue=queue_name) == 0
    finally:
        runtime.close()
        purge(rabbitmq.url, [runtime.actors["MetricsProbe"].queue_name])


def test_a_duration_on_a_bucket_bound_counts_in_that_bucket(config_path: Path) -> None:
    from conveyor.metrics import MetricsSink
    from conveyor.tracing.spans import Span

    client, runtime = serve(config_path)
    sink = MetricsSink(runtime.config)
    durations = [0.0, 5.0, 50.0, 50.001, 10**7]  # ms: on the 0.005 and 0.05 bounds, just past one, past all
    sink.export([Span(**span("run", step="Edge", duration_ms=ms)) for ms in durations])
    samples = scrape(client)

    def bucket(le: str) -> float | None:
        return value(samples, "conveyor_step_run_duration_seconds_bucket", step="Edge", le=le)

    assert [bucket("0.005"), bucket("0.05"), bucket("0.1"), bucket("900.0"), bucket("+Inf")] == [2, 3, 4, 4, 5]
