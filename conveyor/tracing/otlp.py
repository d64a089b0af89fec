"""OpenTelemetry export: finished Conveyor spans also go to an OTLP/HTTP collector, with the
OpenTelemetry messaging conventions (``send <queue>`` PRODUCER, ``process <queue>`` CONSUMER).

It is a second place spans go, never instead of the trace store. The recorder's thread only
appends each batch to a bounded queue; a thread of this sink's own converts and sends it. A
collector that is down or slow costs the spans that do not fit in the queue (counted in
``dropped``) and one warning a minute, never a wait in the recorder or in a handler.

Turned on by ``[tracing] otlp_endpoint`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``: see :func:`otlp_sink`.
The mapping of each kind of span is in :mod:`conveyor.tracing.otel_spans`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from .otel_spans import readable_span
from .recorder import take
from .spans import Span, cut

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger("conveyor.tracing.otlp")

#: Where a collector takes traces, below the base URL that ``OTEL_EXPORTER_OTLP_ENDPOINT`` names.
TRACES_PATH = "/v1/traces"
#: The loggers the OpenTelemetry exporter complains through, on every failed batch.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
)


class _ExporterQuiet(logging.Filter):
    """Holds back what the exporter logs from a sink's own thread (a line per retry and per failed
    batch), keeping the first line for the sink's one warning a minute; other threads' lines pass."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self.local, "active", False):
            # The first line about a batch names the cause (refused, 404...); later ones only retry.
            if getattr(self.local, "first", None) is None:
                self.local.first = record.getMessage()
            return False
        return True


_QUIET = _ExporterQuiet()


def _quiet_exporter_loggers() -> None:
    for name in _EXPORTER_LOGGERS:
        exporter_logger = logging.getLogger(name)
        if _QUIET not in exporter_logger.filters:
            exporter_logger.addFilter(_QUIET)


def traces_url(endpoint: str) -> str:
    """The URL spans are posted to: ``endpoint`` itself if it ends in ``/v1/traces``, else that
    path below it (``http://collector:4318`` -> ``http://collector:4318/v1/traces``)."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"[tracing] otlp_endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) must be an http:// or https:// URL of an "
            f"OTLP/HTTP collector, such as http://127.0.0.1:4318; got {endpoint!r}"
        )
    url = endpoint.strip()
    return url if parts.path.rstrip("/").endswith(TRACES_PATH) else url.rstrip("/") + TRACES_PATH


class OtlpSink:
    """A span sink (see :class:`conveyor.tracing.recorder.SpanSink`) that exports over OTLP/HTTP.

    Parameters:
      endpoint: the collector, e.g. ``http://127.0.0.1:4318`` (``/v1/traces`` is added).
      service_name: the ``service.name`` of the exported resource.
      deployment: ``[project] name``, exported as the resource's ``conveyor.deployment``.
      timeout: seconds one batch may take, retries included, before it is given up.
      queue_size: spans held while the collector is slow; beyond this new ones are dropped.
      batch: spans sent in one request, at most.
      interval: seconds between two sends, at most.

    Example::

        sink = OtlpSink("http://127.0.0.1:4318", service_name="shop", deployment="shop")
        recorder = Recorder(open_store, sinks=[sink])
        ...
        recorder.close()
        sink.close()
    """

    #: Seconds between two warnings about a collector that does not take spans.
    complaint_interval = 60.0

    def __init__(
        self,
        endpoint: str,
        *,
        service_name: str,
        deployment: str,
        timeout: float = 5.0,
        queue_size: int = 8192,
        batch: int = 512,
        interval: float = 1.0,
    ) -> None:
        self.url = traces_url(endpoint)
        self.resource = Resource.create({"service.name": service_name, "conveyor.deployment": deployment})
        self.timeout = timeout
        self.queue_size = queue_size
        self.batch = batch
        self.interval = interval
        #: Spans the collector took.
        self.exported = 0
        # Spans lost, counted apart by where they are lost (each counter has one writing thread).
        self._dropped_queued = 0
        self._dropped_sent = 0
        self._dropped_closing = 0
        _quiet_exporter_loggers()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A forked child starts empty, with a thread and an HTTP connection of its own.
        self._queue: collections.deque[Span] = collections.deque()
        self._thread: threading.Thread | None = None
        self._exporter: OTLPSpanExporter | None = None
        self._exporter_closed = False
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._abandoned = False
        self._lock = threading.Lock()
        self._failing = False
        self._complained = -self.complaint_interval

    @property
    def dropped(self) -> int:
        """Spans lost: the queue was full, the sink closed, or the collector down or refusing them."""
        return self._dropped_queued + self._dropped_sent + self._dropped_closing

    # -- the recorder's thread -----------------------------------------------------------------

    def export(self, spans: list[Span]) -> None:
        """Queue ``spans`` for the collector; returns at once (converting and sending is the sink's thread's job)."""
        if self._closed:
            self._dropped_queued += len(spans)
            return
        room = self.queue_size - len(self._queue)
        if room < len(spans):
            self._dropped_queued += len(spans) - max(room, 0)
            spans = spans[: max(room, 0)]
        self._queue.extend(spans)
        if self._thread is None:
            self._start()
        if len(self._queue) >= self.batch:
            self._wake.set()

    def accounted(self, *, written: int, dropped: int) -> None:
        """Nothing to do: the store's figures are the metrics sink's business."""

    # -- any thread ----------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what is queued now; ``False`` if that took longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._queue or not self._idle.is_set():
            if self._thread is None or self._closed:
                return not self._queue
            self._wake.set()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds, then drop it) and stop the thread."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                # The collector is not answering: stop retrying, drop the rest.
                self._abandoned = True
                self._close_exporter()
                thread.join(1.0)
            if thread.is_alive():
                # Still waiting on a request that cannot be cut short: the queue behind it is lost.
                self._dropped_closing += len(self._queue)
                self._queue.clear()
        self._close_exporter()

    # -- the sink's thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="conveyor-otlp", daemon=True)
            self._thread = thread
            thread.start()

    def _close_exporter(self) -> None:
        with self._lock:
            if self._exporter is None or self._exporter_closed:
                return
            self._exporter_closed = True
        _QUIET.local.active = True
        try:
            self._exporter.shutdown()  # type: ignore[no-untyped-call]
        except Exception:
            logger.debug("Closing the OTLP exporter failed", exc_info=True)
        finally:
            _QUIET.local.active = False

    def _run(self) -> None:
        _QUIET.local.active = True
        # Made here, not in export(): building it (an HTTP session) is no work for the recorder's thread.
        exporter = OTLPSpanExporter(endpoint=self.url, timeout=self.timeout)
        with self._lock:
            self._exporter = exporter
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._idle.clear()
            try:
                while self._queue and not self._abandoned:
                    self._send(take(self._queue, self.batch))
            finally:
                self._idle.set()
            if self._closed:
                break
        self._dropped_sent += len(self._queue)
        self._queue.clear()
        self._close_exporter()

    def _send(self, spans: Sequence[Span]) -> None:
        assert self._exporter is not None
        batch: list[ReadableSpan] = []
        for span in spans:
            try:
                batch.append(readable_span(span, self.resource))
            except Exception:
                self._dropped_sent += 1
                logger.debug("Span %s could not be converted for OTLP", span.span_id, exc_info=True)
        _QUIET.local.first = None
        try:
            result = self._exporter.export(batch)
        except Exception as exc:
            _QUIET.local.first = repr(exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
            if self._failing:
                self._failing = False
                logger.info("The OTLP collector at %s takes spans again", self.url)
            return
        self._dropped_sent += len(batch)
        self._failing = True
        now = time.monotonic()
        if now - self._complained >= self.complaint_interval:
            self._complained = now
            logger.warning(
                "The OTLP collector at %s did not take %d spans (%s); %d dropped so far. Traces are still kept "
                "in the trace store; check [tracing] otlp_endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) and that "
                "the collector is up.",
                self.url,
                len(batch),
                cut(getattr(_QUIET.local, "first", None), 300) or "no answer",
                self.dropped,
            )


def otlp_sink(config: Config) -> OtlpSink | None:
    """The OTLP sink ``config`` asks for (``[tracing] otlp_endpoint``), or ``None`` without one.

    ``service.name`` is ``[tracing] service_name`` (``OTEL_SERVICE_NAME``), else ``[project] name``.
    """
    endpoint = config.tracing.otlp_endpoint
    if not endpoint:
        return None
    name = config.project.name
    return OtlpSink(endpoint, service_name=config.tracing.service_name or name, deployment=name)
