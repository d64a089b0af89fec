"""OTLP export (conveyor/tracing/otlp.py, otel_spans.py) against a real local OTLP/HTTP receiver,
and the W3C traceparent helpers (conveyor/tracing/w3c.py)."""

from __future__ import annotations

import logging
import socket
import time
import uuid

import pytest

from conveyor.config import parse_config
from conveyor.tracing.otlp import OtlpSink, otlp_sink, traces_url
from conveyor.tracing.recorder import Recorder
from conveyor.tracing.spans import Span, SpanEvent, new_span_id
from conveyor.tracing.w3c import otel_trace_id, parse_traceparent, traceparent
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

QUEUE = "conveyor.orders.ProcessOrder"
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# -- W3C traceparent ---------------------------------------------------------------------------


def test_a_valid_traceparent_gives_its_trace_and_parent() -> None:
    assert parse_traceparent(VALID) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert parse_traceparent(" " + VALID[:-2] + "00\t") == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


def test_a_later_version_is_read_by_its_first_fields() -> None:
    assert parse_traceparent("cc" + VALID[2:]) is not None
    assert parse_traceparent("cc" + VALID[2:] + "-what-comes-next") is not None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "ff" + VALID[2:],  # version ff is forbidden
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
        VALID.upper(),  # uppercase hex
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        VALID[:-1],  # flags too short
        VALID + "0",  # version 00 with more after the flags
        VALID + "-extra",
        "cc" + VALID[2:] + "x",  # a later version: more only after a dash
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  # trace id of 31
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",  # parent id of 15
        "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "zz" + VALID[2:],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".replace("-", " "),
        "x" * 10_000,
    ],
)
def test_a_malformed_traceparent_is_ignored(header: str | None) -> None:
    assert parse_traceparent(header) is None


def test_traceparent_writes_what_parse_reads() -> None:
    trace_id, span_id = uuid.uuid4().hex, new_span_id()
    assert traceparent(trace_id, span_id) == f"00-{trace_id}-{span_id}-01"
    assert parse_traceparent(traceparent(trace_id, span_id)) == (trace_id, span_id)
    # A client's request id becomes a valid header too, the same every time.
    header = traceparent("client-request-42", span_id)
    assert parse_traceparent(header) == (otel_trace_id("client-request-42"), span_id)


def test_otel_trace_id_keeps_w3c_ids_and_hashes_the_rest() -> None:
    ours = uuid.uuid4().hex
    assert otel_trace_id(ours) == ours
    for other in ("req-1", "x" * 64, str(uuid.uuid4()), ours.upper(), "0" * 32):
        hashed = otel_trace_id(other)
        assert len(hashed) == 32 and set(hashed) <= set("0123456789abcdef") and hashed != "0" * 32
        assert hashed == otel_trace_id(other)
    assert otel_trace_id("req-1") != otel_trace_id("req-2")


# -- export ------------------------------------------------------------------------------------


def _span(trace_id: str, kind: str, name: str, parent: str | None, **fields: object) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=new_span_id(),
        parent_id=parent,
        kind=kind,
        name=name,
        started_at=time.time(),
        duration_ms=12.5,
        **fields,
    )  # type: ignore[arg-type]


def _order_trace(trace_id: str) -> list[Span]:
    """A request, its enqueue, a failed first attempt and a second one that is dead."""
    http = _span(
        trace_id,
        "http",
        "POST /orders",
        None,
        step="CreateOrder",
        flow="orders",
        attrs={"method": "POST", "route": "/orders", "http_status": 201, "path": "/orders"},
    )
    enqueue = _span(
        trace_id,
        "enqueue",
        f"send {QUEUE}",
        http.span_id,
        step="ProcessOrder",
        flow="orders",
        message_id="m-1",
        attrs={
            "queue": QUEUE,
            "topic": "order.created",
            "source": "http",
            "delay_ms": 0,
            "payload": "{}",
            "payload_size": 2,
        },
    )
    first = _span(
        trace_id,
        "run",
        f"process {QUEUE}",
        enqueue.span_id,
        step="ProcessOrder",
        flow="orders",
        message_id="m-1",
        attempt=1,
        queue_delay_ms=3.0,
        status="error",
        error_type="TimeoutError",
        error="inventory timed out",
        traceback="Traceback...\nTimeoutError: inventory timed out",
        attrs={"queue": QUEUE},
        events=[SpanEvent("retry_scheduled", time.time(), {"delay_ms": 1000})],
    )
    second = _span(
        trace_id,
        "run",
        f"process {QUEUE}",
        enqueue.span_id,
        step="ProcessOrder",
        flow="orders",
        message_id="m-1",
        attempt=2,
        queue_delay_ms=1001.0,
        status="dead",
        error_type="TimeoutError",
        error="inventory timed out",
        attrs={"queue": QUEUE},
    )
    return [http, enqueue, first, second]


def _by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


@pytest.fixture
def receiver():
    with OtlpReceiver() as receiver:
        yield receiver


def test_spans_arrive_with_the_messaging_conventions(receiver: OtlpReceiver) -> None:
    trace_id = uuid.uuid4().hex
    http, enqueue, first, second = _order_trace(trace_id)
    cron = _span(
        uuid.uuid4().hex,
        "cron",
        "cron Cleanup",
        None,
        step="Cleanup",
        flow="food",
        attrs={"scheduled_at": 1700000000.0},
    )
    sink = OtlpSink(receiver.url, service_name="shop", deployment="shop-prod", interval=0.05)
    try:
        sink.export([http, enqueue, first, second, cron])
        assert sink.flush()
        got = receiver.wait_for(5)
    finally:
        sink.close()

    assert {span.trace_id for span in got if span.name != "cron Cleanup"} == {trace_id}
    assert all(span.resource["service.name"] == "shop" for span in got)
    assert all(span.resource["conveyor.deployment"] == "shop-prod" for span in got)

    [server] = _by_name(got, "POST /orders")
    assert server.kind == "SERVER" and server.parent_span_id == "" and server.status == "UNSET"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.route"] == "/orders"
    assert server.attributes["http.response.status_code"] == 201
    assert server.attributes["url.path"] == "/orders"
    assert server.end_ns - server.start_ns == 12_500_000

    [send] = _by_name(got, f"send {QUEUE}")
    assert send.kind == "PRODUCER" and send.parent_span_id == http.span_id and send.span_id == enqueue.span_id
    assert send.attributes["messaging.system"] == "rabbitmq"
    assert send.attributes["messaging.operation.name"] == "send"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == ""
    assert send.attributes["messaging.rabbitmq.destination.routing_key"] == QUEUE
    assert send.attributes["messaging.message.id"] == "m-1"
    assert send.attributes["messaging.message.conversation_id"] == trace_id
    assert send.attributes["conveyor.step"] == "ProcessOrder"
    assert send.attributes["conveyor.topic"] == "order.created"
    assert send.attributes["conveyor.source"] == "http"
    assert send.attributes["conveyor.delay_ms"] == 0
    assert not any("payload" == key.rsplit(".", 1)[-1] for key in send.attributes)

    attempts = sorted(_by_name(got, f"process {QUEUE}"), key=lambda span: span.attributes["conveyor.attempt"])
    assert [span.attributes["conveyor.attempt"] for span in attempts] == [1, 2]
    for attempt, outcome in zip(attempts, ("error", "dead"), strict=True):
        assert attempt.kind == "CONSUMER"
        assert attempt.parent_span_id == enqueue.span_id
        assert attempt.links == [(trace_id, enqueue.span_id)]
        assert attempt.attributes["messaging.operation.type"] == "process"
        assert attempt.attributes["messaging.message.id"] == "m-1"
        assert attempt.attributes["conveyor.outcome"] == outcome
        assert attempt.status == "ERROR" and "inventory timed out" in attempt.status_message
        assert attempt.attributes["error.type"] == "TimeoutError"
        exception = [attrs for name, _, attrs in attempt.events if name == "exception"]
        assert exception and exception[0]["exception.type"] == "TimeoutError"
    assert attempts[0].attributes["conveyor.queue_delay_ms"] == 3.0
    assert [(name, attrs) for name, _, attrs in attempts[0].events][0] == ("retry_scheduled", {"delay_ms": 1000})
    assert (
        "Traceback"
        in [attrs for name, _, attrs in attempts[0].events if name == "exception"][0]["exception.stacktrace"]
    )

    [fire] = _by_name(got, "cron Cleanup")
    assert fire.kind == "INTERNAL" and fire.attributes["conveyor.step"] == "Cleanup"
    assert sink.exported == 5 and sink.dropped == 0


def test_a_client_request_id_and_a_5xx(receiver: OtlpReceiver) -> None:
    request_id = "client-req-0001"
    http = _span(
        request_id,
        "http",
        "GET /boom",
        None,
        status="ok",
        attrs={"method": "GET", "route": "/boom", "http_status": 503},
    )
    missing = _span(
        request_id, "http", "GET /pets/{id}", None, attrs={"method": "GET", "route": "/pets/{id}", "http_status": 404}
    )
    enqueue = _span(request_id, "enqueue", "send q", http.span_id, message_id="m-2", attrs={"queue": "q"})
    sink = OtlpSink(receiver.url + "/v1/traces", service_name="svc", deployment="dep", interval=0.05)
    try:
        sink.export([http, missing, enqueue])
        got = receiver.wait_for(3)
    finally:
        sink.close()
    assert {span.trace_id for span in got} == {otel_trace_id(request_id)}
    [boom] = _by_name(got, "GET /boom")
    assert boom.status == "ERROR" and boom.attributes["error.type"] == "503"
    assert boom.attributes["conveyor.trace_id"] == request_id
    [not_found] = _by_name(got, "GET /pets/{id}")
    assert not_found.status == "UNSET" and "error.type" not in not_found.attributes
    [send] = _by_name(got, "send q")
    assert send.attributes["messaging.message.conversation_id"] == request_id


def test_the_recorder_feeds_the_sink(receiver: OtlpReceiver) -> None:
    sink = OtlpSink(receiver.url, service_name="svc", deployment="dep", interval=0.05)
    recorder = Recorder(None, sinks=[sink], interval=0.05)
    trace_id = uuid.uuid4().hex
    try:
        for span in _order_trace(trace_id):
            recorder.span(span)
        assert recorder.flush()
        assert sink.flush()
        got = receiver.wait_for(4)
    finally:
        recorder.close()
        sink.close()
    assert len(got) == 4 and {span.trace_id for span in got} == {trace_id}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_collector_that_is_down_never_holds_export_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = OtlpSink(
        f"http://127.0.0.1:{_closed_port()}",
        service_name="svc",
        deployment="dep",
        timeout=0.5,
        queue_size=300,
        batch=50,
        interval=0.01,
    )
    slowest = 0.0
    try:
        for _ in range(10):
            spans = [span for _ in range(25) for span in _order_trace(uuid.uuid4().hex)]
            started = time.perf_counter()
            sink.export(spans)
            slowest = max(slowest, time.perf_counter() - started)
        sink.flush(timeout=3.0)
    finally:
        started = time.perf_counter()
        sink.close(timeout=1.0)
        closing = time.perf_counter() - started
    print(f"\nexport() of 100 spans, collector down: slowest call {slowest * 1000:.1f} ms; close() {closing:.2f} s")
    assert sink.exported == 0
    # The queue holds 300: of the 1,000 spans most are dropped, and every one is counted.
    assert sink.dropped == 1000
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].name == "conveyor.tracing.otlp" and "otlp_endpoint" in warnings[0].getMessage()


def test_a_collector_that_never_answers_costs_spans_not_a_stall() -> None:
    # A socket that listens but never answers: the connection opens, the request waits.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        sink = OtlpSink(
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            service_name="svc",
            deployment="dep",
            timeout=3.0,
            queue_size=100,
            batch=10,
            interval=0.01,
        )
        started = time.perf_counter()
        for _ in range(50):
            sink.export(_order_trace(uuid.uuid4().hex))
        exporting = time.perf_counter() - started
        assert not sink.flush(timeout=0.2)
        started = time.perf_counter()
        sink.close(timeout=0.5)
        closing = time.perf_counter() - started
    print(f"\ncollector silent: 50 export() calls {exporting * 1000:.1f} ms in all; close() {closing:.2f} s")
    assert sink.exported == 0
    # 200 spans, a queue of 100: the rest were dropped as they came, and counted.
    assert sink.dropped >= 100


def test_export_after_close_drops_and_counts(receiver: OtlpReceiver) -> None:
    sink = OtlpSink(receiver.url, service_name="svc", deployment="dep", interval=0.05)
    sink.close()
    sink.export(_order_trace(uuid.uuid4().hex))
    assert sink.dropped == 4 and receiver.spans == []


def test_traces_url() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otel.example/v1/traces") == "https://otel.example/v1/traces"
    with pytest.raises(ValueError, match="otlp_endpoint"):
        traces_url("collector:4318")


def test_otlp_sink_from_config() -> None:
    assert otlp_sink(parse_config({})) is None
    sink = otlp_sink(parse_config({"project": {"name": "shop"}, "tracing": {"otlp_endpoint": "http://127.0.0.1:1"}}))
    assert sink is not None and sink.resource.attributes["service.name"] == "shop"
    assert sink.resource.attributes["conveyor.deployment"] == "shop"
    named = otlp_sink(parse_config({"tracing": {"otlp_endpoint": "http://127.0.0.1:1", "service_name": "api"}}))
    assert named is not None and named.resource.attributes["service.name"] == "api"
    for made in (sink, named):
        made.close()
