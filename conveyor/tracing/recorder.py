"""The recorder: takes spans and log lines from any thread without waiting, and writes them in
batches from a thread of its own, to the trace store and to any other sink (metrics, OTLP).

A handler never waits on tracing: recording appends to an in-memory buffer. When the store
falls behind and the buffer is full, new spans are dropped and counted (``dropped``), never
queued without bound. A run still going after a second is written to the store as ``running``
(and again every few seconds, so its bar grows), then replaced by the finished span. Each
process has its own thread, started on first use (so a process forked after the recorder was
made starts its own, with an empty buffer).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from .queries import TraceStore
from .spans import LogLine, Span

logger = logging.getLogger("conveyor.tracing")

T = TypeVar("T")

#: Seconds between two writes of the buffer, at most.
FLUSH_INTERVAL = 0.2
#: Spans written in one transaction, at most.
BATCH = 2000
#: Seconds between two log lines about a store that refuses writes.
COMPLAINT_INTERVAL = 60.0
#: A run still going after this many seconds is shown as ``running``...
RUNNING_AFTER = 1.0
#: ...and written again every this many seconds while it runs (the console keeps polling a trace that changes).
RUNNING_REFRESH = 5.0
#: Runs followed at most (their spans are still recorded when they end, just not shown before).
_RUNNING_MOST = 10_000


class SpanSink(Protocol):
    """Somewhere finished spans go besides the store (Prometheus metrics, an OTLP exporter).

    Called from the recorder's thread, with each batch.
    """

    def export(self, spans: list[Span]) -> None:
        """Take a batch of finished spans."""
        ...

    def accounted(self, *, written: int, dropped: int) -> None:
        """Spans the store took, and spans dropped (buffer full or store failing), since the last call."""
        ...


class Recorder:
    """Buffers spans and log lines and writes them from a background thread.

    Parameters:
      open_store: makes the trace store, in the thread that writes (``None``: no store, the
        spans only go to ``sinks``, e.g. with ``[tracing] enabled = false`` but metrics on).
      sinks: the other places spans go.
      buffer: spans (and, apart, log lines) held before new ones are dropped.
    """

    def __init__(
        self,
        open_store: Callable[[], TraceStore] | None,
        sinks: Sequence[SpanSink] = (),
        *,
        buffer: int = 20_000,
        interval: float = FLUSH_INTERVAL,
    ) -> None:
        self._open_store = open_store
        self.sinks = list(sinks)
        self.buffer = buffer
        self.interval = interval
        #: Spans and log lines lost so far: the buffer was full, or the store refused them.
        self.dropped = 0
        self.written = 0
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    @property
    def keeps_logs(self) -> bool:
        """Whether log lines are kept (only a store keeps them)."""
        return self._open_store is not None

    def _reset(self) -> None:
        self._spans: collections.deque[Span] = collections.deque()
        self._logs: collections.deque[LogLine] = collections.deque()
        self._thread: threading.Thread | None = None
        self._store: TraceStore | None = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._lock = threading.Lock()
        self._complained = 0.0
        self._unaccounted_written = 0
        self._unaccounted_dropped = 0
        #: Runs begun and not ended, by span id; and when the store last had each (the recorder's thread only).
        self._running: dict[str, Span] = {}
        self._shown: dict[str, float] = {}

    # -- any thread ----------------------------------------------------------------------------

    def running(self, span: Span) -> None:
        """``span`` has begun and will be recorded when it ends: if it lasts, the store shows it meanwhile."""
        if self._open_store is None or self._closed or len(self._running) >= _RUNNING_MOST:
            return
        self._running[span.span_id] = span
        if self._thread is None:
            self._start()

    def span(self, span: Span) -> None:
        """Record a finished span; returns at once."""
        # Forgotten as running before it is queued: the recorder's thread never shows it as running
        # after it wrote the finished span.
        self._running.pop(span.span_id, None)
        if len(self._spans) >= self.buffer or self._closed:
            self.dropped += 1
            self._unaccounted_dropped += 1
            return
        self._spans.append(span)
        if self._thread is None:
            self._start()

    def log(self, line: LogLine) -> None:
        """Record a log line of a span; returns at once."""
        if self._open_store is None:
            return
        if len(self._logs) >= self.buffer or self._closed:
            self.dropped += 1
            self._unaccounted_dropped += 1
            return
        self._logs.append(line)
        if self._thread is None:
            self._start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything recorded so far now; ``False`` if that took longer than ``timeout`` seconds."""
        if self._thread is None:
            return not (self._spans or self._logs)
        deadline = time.monotonic() + timeout
        while self._spans or self._logs or not self._idle.is_set():
            self._wake.set()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is buffered, stop the thread and close the store."""
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the recorder's thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="conveyor-tracing", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._idle.clear()
            try:
                if self._running:
                    self._show_running()
                while self._spans or self._logs:
                    self._write_batch()
            finally:
                self._idle.set()
            if self._closed:
                break
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                logger.debug("Closing the trace store failed", exc_info=True)

    def _show_running(self) -> None:
        """Write a ``running`` copy of each run that has gone on for a while (the finished span replaces it)."""
        now = time.time()
        shown: list[Span] = []
        for span in tuple(self._running.values()):
            if now - span.started_at < RUNNING_AFTER or now - self._shown.get(span.span_id, 0.0) < RUNNING_REFRESH:
                continue
            try:
                copy = dataclasses.replace(
                    span, status="running", duration_ms=(now - span.started_at) * 1000,
                    attrs=dict(span.attrs), events=list(span.events),
                )  # fmt: skip
            except RuntimeError:  # its handler's thread changed it meanwhile: next time
                continue
            shown.append(copy)
        if not shown:
            return
        try:
            self._open().write(shown, [])
        except Exception as exc:
            self._complain(exc, len(shown))
            return
        for span in shown:
            self._shown[span.span_id] = now

    def _open(self) -> TraceStore:
        assert self._open_store is not None
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _write_batch(self) -> None:
        spans = take(self._spans, BATCH)
        logs = take(self._logs, BATCH)
        if self._open_store is not None:
            try:
                store = self._open()
                # Spans shown as running replace their rows: a write of their own, so the others stay
                # on the store's fast path (all new rows).
                replacing = [span for span in spans if span.span_id in self._shown] if self._shown else []
                if replacing:
                    spans_new = [span for span in spans if span.span_id not in self._shown]
                    store.write(spans_new, logs)
                    store.write(replacing, [])
                    for span in replacing:
                        del self._shown[span.span_id]
                else:
                    store.write(spans, logs)
                self.written += len(spans)
                self._unaccounted_written += len(spans)
            except Exception as exc:
                self.dropped += len(spans) + len(logs)
                self._unaccounted_dropped += len(spans) + len(logs)
                self._complain(exc, len(spans) + len(logs))
        for sink in self.sinks:
            try:
                sink.export(spans)
            except Exception:
                logger.exception("A span sink (%s) failed; its spans are lost", type(sink).__name__)
        written, self._unaccounted_written = self._unaccounted_written, 0
        dropped, self._unaccounted_dropped = self._unaccounted_dropped, 0
        if written or dropped:
            for sink in self.sinks:
                try:
                    sink.accounted(written=written, dropped=dropped)
                except Exception:
                    logger.exception("A span sink (%s) failed to count spans", type(sink).__name__)

    def _complain(self, exc: Exception, lost: int) -> None:
        now = time.monotonic()
        if now - self._complained >= COMPLAINT_INTERVAL:
            self._complained = now
            logger.warning(
                "The trace store refused %d spans and log lines (%s); they are dropped, and handlers go on. "
                "Traces come back once it answers.",
                lost,
                exc,
            )


def take(queue: collections.deque[T], most: int) -> list[T]:
    """Up to ``most`` items from the left of ``queue`` (appended by other threads meanwhile: no lock needed)."""
    taken: list[T] = []
    while queue and len(taken) < most:
        taken.append(queue.popleft())
    return taken
