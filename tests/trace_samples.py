"""Realistic spans and log lines, as the tracer makes them, for tests of anything that reads traces.

Each builder returns a :class:`Sample` (the spans and log lines of one trace) at a start time
you give, so tests can place traces in time:

- :func:`http_request`: ``POST /orders`` answering 201, which enqueues to two steps that each run once.
- :func:`retried_then_dead`: a message whose every attempt fails, the last one dead-lettered.
- :func:`replay`: a replay of a dead message, landing in the original trace.
- :func:`cron_fire`: a cron fire that enqueues one message, run once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from conveyor.tracing.spans import LogLine, Span, SpanEvent, new_span_id, preview

FLOW = "order-processing"


@dataclass
class Sample:
    """One trace's spans and log lines."""

    trace_id: str
    spans: list[Span] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)

    def span(self, kind: str) -> Span:
        """The first span of ``kind``."""
        return next(span for span in self.spans if span.kind == kind)


def _payload(size: int) -> dict[str, object]:
    return {"orderId": "order-1", "customerId": "customer-123", "note": "x" * max(0, size - 60)}


def _enqueue(trace_id: str, parent: Span, step: str, at: float, *, source: str, payload_size: int) -> Span:
    text, length = preview(_payload(payload_size))
    return Span(
        trace_id, new_span_id(), parent.span_id, "enqueue", f"send conveyor.{FLOW}.{step}", at, 1.5,
        step=step, flow=FLOW, message_id=uuid.uuid4().hex,
        attrs={"topic": step.lower(), "source": source, "delay_ms": 0, "priority": 0, "payload": text,
               "payload_size": length},
    )  # fmt: skip


def _run(enqueue: Span, at: float, *, attempt: int = 1, status: str = "ok", error: str | None = None) -> Span:
    failed = status in ("error", "dead")
    return Span(
        enqueue.trace_id, new_span_id(), enqueue.span_id, "run", f"process conveyor.{FLOW}.{enqueue.step}",
        at + 0.005, 12.0, status=status, step=enqueue.step, flow=FLOW, message_id=enqueue.message_id,
        attempt=attempt, queue_delay_ms=5.0,
        error_type="RuntimeError" if failed else None, error=error if failed else None,
        traceback=f'Traceback (most recent call last):\n  File "step.py"\nRuntimeError: {error}' if failed else None,
        attrs={"payload": enqueue.attrs["payload"], "payload_size": enqueue.attrs["payload_size"]},
    )  # fmt: skip


def _log(span: Span, at: float, message: str, level: str = "INFO") -> LogLine:
    return LogLine(span.trace_id, span.span_id, at, level, f"conveyor.steps.{span.step}", message, span.step,
                   {"orderId": "order-1"})  # fmt: skip


def http_request(
    started_at: float, *, http_status: int = 201, payload_size: int = 300, trace_id: str | None = None
) -> Sample:
    """``POST /orders`` → enqueue to ProcessOrder and SendNotification → one run of each; 3 log lines."""
    sample = Sample(trace_id or uuid.uuid4().hex)
    text, length = preview(_payload(payload_size))
    http = Span(
        sample.trace_id, new_span_id(), None, "http", "POST /orders", started_at, 25.0,
        status="error" if http_status >= 500 else "ok", step="CreateOrder", flow=FLOW,
        attrs={"route": "/orders", "method": "POST", "http_status": http_status, "payload": text,
               "payload_size": length},
    )  # fmt: skip
    sample.spans.append(http)
    sample.logs.append(_log(http, started_at + 0.002, "Order received"))
    for offset, step in ((0.010, "ProcessOrder"), (0.012, "SendNotification")):
        enqueue = _enqueue(sample.trace_id, http, step, started_at + offset, source="http", payload_size=payload_size)
        run = _run(enqueue, started_at + offset + 0.01)
        sample.spans += [enqueue, run]
        sample.logs.append(_log(run, run.started_at + 0.001, f"{step} done"))
    return sample


def retried_then_dead(started_at: float, *, attempts: int = 3, trace_id: str | None = None) -> Sample:
    """An http request whose message fails ``attempts`` times: ``error`` runs, then a ``dead`` one.

    Every attempt is its own run span under the one enqueue, with its own error; the retries and
    the dead-lettering are events on them. A log line at ERROR for each attempt.
    """
    sample = Sample(trace_id or uuid.uuid4().hex)
    attrs = {"route": "/charges", "method": "POST", "http_status": 202}
    http = Span(sample.trace_id, new_span_id(), None, "http", "POST /charges", started_at, 8.0, step="Charge",
                flow=FLOW, attrs=attrs)  # fmt: skip
    enqueue = _enqueue(sample.trace_id, http, "ChargeCard", started_at + 0.004, source="http", payload_size=120)
    sample.spans += [http, enqueue]
    for attempt in range(1, attempts + 1):
        last = attempt == attempts
        run = _run(enqueue, started_at + attempt, attempt=attempt, status="dead" if last else "error",
                   error=f"card declined (attempt {attempt})")  # fmt: skip
        event = SpanEvent("dead_lettered", run.ended_at, {"queue": "conveyor.order-processing.ChargeCard.XQ"})
        run.events.append(event if last else SpanEvent("retry_scheduled", run.ended_at, {"delay_ms": 1000}))
        sample.spans.append(run)
        sample.logs.append(_log(run, run.started_at + 0.001, f"charge failed: attempt {attempt}", "ERROR"))
    return sample


def replay(dead: Sample, at: float, *, outcome: str = "ok") -> Sample:
    """A replay of ``dead``'s dead message from the console: an enqueue (source ``replay``) and its run,
    in the original trace."""
    original = next(span for span in dead.spans if span.kind == "enqueue")
    replays = {"source": "replay", "replays": original.message_id}
    enqueue = Span(dead.trace_id, new_span_id(), original.span_id, "enqueue", original.name, at, 1.0,
                   step=original.step, flow=FLOW, message_id=uuid.uuid4().hex,
                   attrs={**original.attrs, **replays})  # fmt: skip
    run = _run(enqueue, at + 0.01, status=outcome, error="still declined")
    run.attrs["replays"] = original.message_id
    return Sample(dead.trace_id, [enqueue, run])


def cron_fire(started_at: float, *, step: str = "DailyCleanup", late_ms: float = 3.0) -> Sample:
    """A fire of the cron step ``step`` ``late_ms`` after its tick, enqueueing one message that runs once."""
    sample = Sample(uuid.uuid4().hex)
    cron = Span(sample.trace_id, new_span_id(), None, "cron", f"cron {step}", started_at, 2.0, step=step, flow=FLOW,
                attrs={"scheduled_at": started_at - late_ms / 1000})  # fmt: skip
    enqueue = _enqueue(sample.trace_id, cron, "PurgeOrders", started_at + 0.001, source="cron", payload_size=80)
    sample.spans += [cron, enqueue, _run(enqueue, started_at + 0.002)]
    return sample
