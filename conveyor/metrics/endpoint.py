"""``GET /metrics``: every process's metrics summed, plus queue depths, in Prometheus's text format."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .multiprocess import locked, prepare_metrics_dir, sweep
from .queues import QueueDepthCollector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector, CollectorRegistry

    from ..runtime import Runtime

#: Seconds between two folds of ended processes' files by the serving process.
SWEEP_INTERVAL = 60.0


def metrics_app(runtime: Runtime, *, queue_cache_seconds: float = 5.0) -> ASGIApp:
    """The ASGI app to mount at ``/metrics``: ``GET`` (or ``HEAD``) answers the text exposition format,
    anything else 405.

    It prepares the metrics directory (``[metrics] path``) itself, and reads queue depths from
    RabbitMQ at scrape time (kept ``queue_cache_seconds``). Mount it behind the console's access rule::

        Mount("/metrics", app=metrics_app(runtime))

    Raises :class:`~conveyor.metrics.MetricsSetupError` when ``prometheus_client`` was imported first.
    """
    from ..ops.queue_stats import queue_stats

    path = prepare_metrics_dir(runtime.config)
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    registry.register(cast("Collector", _Locked(MultiProcessCollector(None, path=str(path)), path)))  # type: ignore[no-untyped-call]
    queues = QueueDepthCollector(lambda: queue_stats(runtime, timeout=2.0), cache_seconds=queue_cache_seconds)
    registry.register(cast("Collector", queues))
    return MetricsApp(registry, path)


class MetricsApp:
    """Answers scrapes from ``registry``, under the shared lock of the metrics directory ``path``."""

    def __init__(self, registry: CollectorRegistry, path: Path) -> None:
        self.registry = registry
        self.path = path
        self._swept = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method not in ("GET", "HEAD"):
            answer: Response = PlainTextResponse(
                "Method Not Allowed: GET /metrics", status_code=405, headers={"Allow": "GET, HEAD"}
            )
        else:
            body, media_type = await run_in_threadpool(self.render)
            answer = Response(body, media_type=media_type)
        await answer(scope, receive, send)

    def render(self) -> tuple[bytes, str]:
        """The exposition text, and its content type (blocking: reads the files, may ask RabbitMQ)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if time.monotonic() - self._swept >= SWEEP_INTERVAL:
            self._swept = time.monotonic()
            sweep(self.path)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Locked:
    """Reads the processes' files under the directory's shared lock, so a sweep folding an ended
    process's files into the archive is never seen half done (counted twice or not at all)."""

    def __init__(self, inner: MultiProcessCollector, path: Path) -> None:
        self.inner = inner
        self.path = path

    def collect(self) -> Iterator[Metric]:
        with locked(self.path, exclusive=False):
            metrics = list(self.inner.collect())  # type: ignore[no-untyped-call]
        yield from metrics
