"""Conveyor spans as OpenTelemetry spans, with the messaging and HTTP semantic conventions.

- an enqueue is a PRODUCER ``send <queue>``: RabbitMQ, the default exchange (``""``) and the
  queue as routing key; the Conveyor trace id is the conversation id;
- a run (one attempt) is a CONSUMER ``process <queue>``, child of the enqueue that sent its
  message (and linked to it, as the conventions ask of consumers); RabbitMQ has no consumer
  groups, so no ``messaging.consumer.group.name``;
- an HTTP request is a SERVER ``<METHOD> <route>``; a cron fire an INTERNAL ``cron <step>``.

Payload previews are not exported: they stay in Conveyor's own store.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from .spans import Span, SpanEvent
from .w3c import otel_span_id, otel_trace_id

#: The instrumentation scope every exported span names.
SCOPE = InstrumentationScope("conveyor")

_KINDS = {"enqueue": SpanKind.PRODUCER, "run": SpanKind.CONSUMER, "http": SpanKind.SERVER}


def readable_span(span: Span, resource: Resource) -> ReadableSpan:
    """``span`` as a finished OpenTelemetry span of ``resource``."""
    trace_id = otel_trace_id(span.trace_id)
    start = int(span.started_at * 1e9)
    end = start + max(int(span.duration_ms * 1e6), 0)
    context = _context(trace_id, span.span_id, remote=False)
    # A run's parent (the enqueue) is in the process that sent the message; an HTTP span's
    # parent, when there is one, came in a ``traceparent`` header: both are remote.
    parent = None if span.parent_id is None else _context(trace_id, span.parent_id, span.kind in ("run", "http"))
    attributes = _attributes(span, trace_id)
    status = Status(StatusCode.UNSET)
    if _failed(span):
        attributes["error.type"] = span.error_type or (
            str(span.attrs["http_status"]) if span.kind == "http" and "http_status" in span.attrs else "_OTHER"
        )
        status = Status(StatusCode.ERROR, _description(span))
    events = [_event(event) for event in span.events]
    if span.failed and (span.error_type or span.error or span.traceback):
        events.append(_exception(span, end))
    links = [Link(parent)] if parent is not None and span.kind == "run" else []
    return ReadableSpan(
        name=_name(span),
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=status,
        start_time=start,
        end_time=end,
        instrumentation_scope=SCOPE,
    )


def _context(trace_id: str, span_id: str, remote: bool) -> SpanContext:
    return SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(otel_span_id(span_id), 16),
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def _queue(span: Span) -> str | None:
    queue = span.attrs.get("queue")
    return str(queue) if queue else None


def _name(span: Span) -> str:
    queue = _queue(span)
    if span.kind == "enqueue" and queue:
        return f"send {queue}"
    if span.kind == "run" and queue:
        return f"process {queue}"
    if span.kind == "http" and span.attrs.get("method"):
        route = span.attrs.get("route")
        return f"{span.attrs['method']} {route}" if route else str(span.attrs["method"])
    if span.kind == "cron" and span.step:
        return f"cron {span.step}"
    return span.name


def _failed(span: Span) -> bool:
    if span.kind == "http":
        # A server span is an error on 5xx only: a 4xx is the client's.
        status = span.attrs.get("http_status")
        return span.failed or (isinstance(status, int) and status >= 500)
    return span.failed


def _description(span: Span) -> str:
    if span.error_type and span.error:
        return f"{span.error_type}: {span.error}"
    return span.error or span.error_type or f"HTTP {span.attrs.get('http_status', '')}".strip()


def _attributes(span: Span, trace_id: str) -> dict[str, AttributeValue]:
    attrs = span.attrs
    found: dict[str, Any] = {
        "conveyor.step": span.step,
        "conveyor.flow": span.flow,
        "conveyor.outcome": span.status,
    }
    if trace_id != span.trace_id:
        # The id a client sent (x-request-id), for finding the trace by it in a tracing backend.
        found["conveyor.trace_id"] = span.trace_id
    if span.kind in ("enqueue", "run"):
        queue = _queue(span)
        operation = "send" if span.kind == "enqueue" else "process"
        found |= {
            "messaging.system": "rabbitmq",
            "messaging.operation.name": operation,
            "messaging.operation.type": operation,
            # Dramatiq publishes to the default exchange, with the queue's name as routing key.
            "messaging.destination.name": "",
            "messaging.rabbitmq.destination.routing_key": queue,
            "messaging.message.id": span.message_id,
            "messaging.message.conversation_id": span.trace_id,
        }
    if span.kind == "enqueue":
        found |= {
            "conveyor.topic": attrs.get("topic"),
            "conveyor.source": attrs.get("source"),
            "conveyor.delay_ms": attrs.get("delay_ms"),
            "conveyor.priority": attrs.get("priority"),
        }
    elif span.kind == "run":
        found |= {"conveyor.attempt": span.attempt, "conveyor.queue_delay_ms": span.queue_delay_ms}
    elif span.kind == "http":
        found |= {
            "http.request.method": attrs.get("method"),
            "http.route": attrs.get("route"),
            "http.response.status_code": attrs.get("http_status"),
            "url.path": attrs.get("path"),
        }
    elif span.kind == "cron":
        found["conveyor.scheduled_at"] = attrs.get("scheduled_at")
    if "payload_size" in attrs:
        found["conveyor.payload_size"] = attrs["payload_size"]
    found["conveyor.replays"] = attrs.get("replays")  # the dead message a replay's spans take up again
    return {key: _value(value) for key, value in found.items() if value is not None}


def _value(value: Any) -> AttributeValue:
    """An attribute value OTLP can carry: a scalar as it is, anything else as its JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) for item in value):
        return list(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def _event(event: SpanEvent) -> Event:
    attributes = {key: _value(value) for key, value in event.attrs.items() if value is not None}
    return Event(event.name, attributes, int(event.at * 1e9))


def _exception(span: Span, at: int) -> Event:
    found = {
        "exception.type": span.error_type,
        "exception.message": span.error,
        "exception.stacktrace": span.traceback,
    }
    return Event("exception", {key: value for key, value in found.items() if value is not None}, at)
