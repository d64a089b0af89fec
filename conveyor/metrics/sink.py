"""Prometheus metrics derived from finished spans: the recorder's :class:`~conveyor.tracing.recorder.SpanSink`.

Every process that records spans (gateway, workers, scheduler) counts into files of the shared
metrics directory; ``GET /metrics`` on the gateway sums them (:mod:`conveyor.metrics.endpoint`).
Labels stay few and bounded: route templates, never raw paths; steps, queues, sources and
outcomes; never message or trace ids.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

from ..config import Config
from ..tracing.spans import SOURCES, STATUSES, Span
from .multiprocess import current_dir, prepare_metrics_dir

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

#: Buckets, in seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
DELAY_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Distinct values one label takes in one process before the rest count as ``other``: a guard
#: against a producer that puts something unbounded (a raw path) where a template belongs.
MAX_LABEL_VALUES = 300
MAX_LABEL_LENGTH = 200
OTHER = "other"
#: The route label of a request no route matched (a 404).
UNMATCHED = "unmatched"


class MetricsSink:
    """Counts what finished spans say into Prometheus metrics shared by every process.

    Give it to the recorder (``Recorder(open_store, sinks=[MetricsSink(config)])``) in each process.
    Making it prepares the metrics directory (:func:`~conveyor.metrics.prepare_metrics_dir`) and only
    then imports ``prometheus_client``.

    Parameters:
      config: the loaded config; ``[metrics] path`` is the directory shared with the other processes.

    Raises :class:`~conveyor.metrics.MetricsSetupError` when ``prometheus_client`` was imported first.
    """

    def __init__(self, config: Config) -> None:
        self.path = prepare_metrics_dir(config)
        # Imported here, after the directory is set: prometheus-client picks file-backed values then.
        from prometheus_client import Counter, Gauge, Histogram

        self._seen: dict[str, set[str]] = {}
        self._last_success: dict[str, float] = {}
        # registry=None: the values go to the directory's files; the endpoint reads those, and a
        # second sink in one process (tests) does not clash with the first in a registry.
        self.http_requests: Counter = Counter(
            "conveyor_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=None,
        )
        self.http_duration: Histogram = Histogram(
            "conveyor_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=None,
        )
        self.enqueued: Counter = Counter(
            "conveyor_messages_enqueued_total",
            "Messages enqueued, by target step, queue and source (http, step, state, cron, replay, ...).",
            ["step", "queue", "source"],
            registry=None,
        )
        self.runs: Counter = Counter(
            "conveyor_step_runs_total",
            "Attempts of step runs, by step and outcome (ok, error, dead, skipped).",
            ["step", "outcome"],
            registry=None,
        )
        self.run_duration: Histogram = Histogram(
            "conveyor_step_run_duration_seconds",
            "Time a step's handler took per attempt (skipped runs left out).",
            ["step"],
            buckets=RUN_BUCKETS,
            registry=None,
        )
        self.queue_delay: Histogram = Histogram(
            "conveyor_step_queue_delay_seconds",
            "Time a message waited in its queue (from enqueue, or from when it was due) before a run started.",
            ["step"],
            buckets=DELAY_BUCKETS,
            registry=None,
        )
        self.retries: Counter = Counter(
            "conveyor_step_retries_total", "Retries scheduled after a failed attempt, by step.", ["step"], registry=None
        )
        self.dead_letters: Counter = Counter(
            "conveyor_dead_letters_total",
            "Messages that failed for good (dead-lettered), by step.",
            ["step"],
            registry=None,
        )
        self.replays: Counter = Counter(
            "conveyor_dead_letters_replayed_total",
            "Dead messages sent back to their step, by step.",
            ["step"],
            registry=None,
        )
        self.cron_runs: Counter = Counter(
            "conveyor_cron_runs_total",
            "Cron fires, by job (the cron step) and outcome.",
            ["job", "outcome"],
            registry=None,
        )
        self.cron_lateness: Histogram = Histogram(
            "conveyor_cron_lateness_seconds",
            "How long after its scheduled time a cron fire started, by job.",
            ["job"],
            buckets=LATENESS_BUCKETS,
            registry=None,
        )
        # max: the latest success of any process, the scheduler's or one that ran before it restarted.
        self.cron_last_success: Gauge = Gauge(
            "conveyor_cron_last_success_timestamp_seconds",
            "When a cron job last finished without an error, in seconds since the epoch.",
            ["job"],
            multiprocess_mode="max",
            registry=None,
        )
        self.spans_written: Counter = Counter(
            "conveyor_trace_spans_written_total", "Spans the trace store took.", registry=None
        )
        self.spans_dropped: Counter = Counter(
            "conveyor_trace_spans_dropped_total",
            "Spans and log lines dropped: the recorder's buffer was full or the trace store refused them.",
            registry=None,
        )

    # -- SpanSink ------------------------------------------------------------------------------

    def export(self, spans: list[Span]) -> None:
        """Count a batch of finished spans (called from the recorder's thread)."""
        if current_dir() != self.path:
            return  # a later runtime in this process (tests) took the metrics elsewhere
        tally = _Tally()
        for span in spans:
            if span.kind == "http":
                self._http(span, tally)
            elif span.kind == "enqueue":
                self._enqueue(span, tally)
            elif span.kind == "run":
                self._run(span, tally)
            elif span.kind == "cron":
                self._cron(span, tally)
        tally.write()

    def accounted(self, *, written: int, dropped: int) -> None:
        """Count spans the store took and spans dropped since the last call."""
        if current_dir() != self.path:
            return
        if written:
            self.spans_written.inc(written)
        if dropped:
            self.spans_dropped.inc(dropped)

    # -- by kind -------------------------------------------------------------------------------

    def _http(self, span: Span, tally: _Tally) -> None:
        route = self._bounded("route", span.attrs.get("route") or UNMATCHED)
        method = str(span.attrs.get("method") or "").upper()
        method = method if method in METHODS else OTHER
        status = span.attrs.get("http_status")
        code = str(status) if isinstance(status, int) and 100 <= status <= 599 else "unknown"
        tally.count(self.http_requests, route, method, code)
        tally.observe(self.http_duration, _seconds(span.duration_ms), route, method)

    def _enqueue(self, span: Span, tally: _Tally) -> None:
        step = self._step(span)
        source = span.attrs.get("source")
        source = source if source in SOURCES else OTHER
        queue = self._bounded("queue", span.attrs.get("queue") or "")
        tally.count(self.enqueued, step, queue, source)
        if source == "replay":
            tally.count(self.replays, step)

    def _run(self, span: Span, tally: _Tally) -> None:
        step = self._step(span)
        outcome = span.status if span.status in STATUSES else OTHER
        tally.count(self.runs, step, outcome)
        if outcome != "skipped":
            tally.observe(self.run_duration, _seconds(span.duration_ms), step)
        if span.queue_delay_ms is not None:
            tally.observe(self.queue_delay, _seconds(span.queue_delay_ms), step)
        for event in span.events:
            if event.name == "retry_scheduled":
                tally.count(self.retries, step)
        if span.status == "dead":  # the tracer marks a run dead exactly when it dead-letters it
            tally.count(self.dead_letters, step)

    def _cron(self, span: Span, tally: _Tally) -> None:
        job = self._step(span)
        outcome = span.status if span.status in STATUSES else OTHER
        tally.count(self.cron_runs, job, outcome)
        scheduled = span.attrs.get("scheduled_at")
        if isinstance(scheduled, int | float):
            tally.observe(self.cron_lateness, max(0.0, span.started_at - scheduled), job)
        if span.status == "ok":
            last = self._last_success.get(job, 0.0)
            if span.ended_at > last:
                self._last_success[job] = span.ended_at
                tally.set(self.cron_last_success, span.ended_at, job)

    def _step(self, span: Span) -> str:
        return self._bounded("step", span.step or "unknown")

    def _bounded(self, label: str, value: object) -> str:
        text = str(value)[:MAX_LABEL_LENGTH]
        seen = self._seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= MAX_LABEL_VALUES:
            return OTHER
        seen.add(text)
        return text


class _Tally:
    """One batch's counts and observations, written once per label set.

    Each write to a multi-process value costs a ``getpid`` system call and a write to the mapped
    file; a batch of 2000 spans of a few steps comes down to a few dozen writes.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[Counter, tuple[str, ...]], int] = defaultdict(int)
        self.observed: dict[tuple[Histogram, tuple[str, ...]], list[float]] = defaultdict(list)
        self.latest: dict[tuple[Gauge, tuple[str, ...]], float] = {}

    def count(self, metric: Counter, *labels: str) -> None:
        self.counts[metric, labels] += 1

    def observe(self, metric: Histogram, amount: float, *labels: str) -> None:
        self.observed[metric, labels].append(amount)

    def set(self, metric: Gauge, amount: float, *labels: str) -> None:
        self.latest[metric, labels] = amount

    def write(self) -> None:
        for (counter, labels), n in self.counts.items():
            counter.labels(*labels).inc(n)
        for (histogram, labels), amounts in self.observed.items():
            _observe_all(histogram.labels(*labels), amounts)
        for (gauge, labels), amount in self.latest.items():
            gauge.labels(*labels).set(amount)


def _observe_all(child: Histogram, amounts: list[float]) -> None:
    """``child.observe`` of each amount, as one write per bucket touched and one to the sum."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:  # a prometheus-client that moved its internals
        for amount in amounts:
            child.observe(amount)
        return
    per_bucket = [0] * len(bounds)
    for amount in amounts:
        # observe() counts an amount in the first bucket whose upper bound is >= it (the last is +Inf).
        per_bucket[bisect.bisect_left(bounds, amount)] += 1
    total.inc(sum(amounts))
    for bucket, n in zip(buckets, per_bucket, strict=True):
        if n:
            bucket.inc(n)


def _seconds(ms: float) -> float:
    return max(0.0, ms / 1000)
