"""``/queues``: per step, what ``python -m actors stats`` shows (ready, unacknowledged, delayed, dead,
consumers) and the rates RabbitMQ's management API gives, each linked to the queue in its management UI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import ConveyorError
from ..messaging.connections import without_credentials
from ..ops.management import ManagementAPI, broker_credentials
from ..ops.queue_stats import QueueStats, queue_stats
from ..runtime import Runtime
from .rendering import Console

logger = logging.getLogger("conveyor.console.queues")

#: Seconds the page waits for RabbitMQ's management API.
STATS_TIMEOUT = 2.0
#: The per-second rates read from each queue's ``message_stats``: (column, label).
RATES: tuple[tuple[str, str], ...] = (("publish", "in/s"), ("deliver_get", "out/s"), ("ack", "acked/s"))
_RATE_COLUMNS = "name," + ",".join(f"message_stats.{name}_details.rate" for name, _ in RATES)


@dataclass(frozen=True)
class QueueRow:
    """One step's line on the page: its counts, its rates (``None``: not known) and its management UI link."""

    stats: QueueStats
    rates: dict[str, float | None]
    link: str | None


def management_link(runtime: Runtime, queue: str) -> str | None:
    """The queue's page in RabbitMQ's management UI, or ``None`` without a management URL."""
    urls = runtime.config.broker.management_urls
    if not urls:
        return None
    vhost = broker_credentials(runtime.config.broker.urls[0])[2]
    return f"{without_credentials(urls[0]).rstrip('/')}/#/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"


def queue_rows(runtime: Runtime) -> tuple[list[QueueRow], str | None]:
    """Every step's row, and a note when RabbitMQ cannot say (the memory broker, the API unreachable)."""
    try:
        stats = queue_stats(runtime, timeout=STATS_TIMEOUT)
    except (ConveyorError, OSError) as exc:
        return [], f"Queue figures are not available: {exc}"
    rates, note = _rates(runtime)
    rows = [
        QueueRow(s, rates.get(s.queue, {name: None for name, _ in RATES}), management_link(runtime, s.queue))
        for s in stats
    ]
    return rows, note


def _rates(runtime: Runtime) -> tuple[dict[str, dict[str, float | None]], str | None]:
    broker = runtime.config.broker
    try:
        api = ManagementAPI(broker.management_urls, broker.urls, timeout=STATS_TIMEOUT)
        found: list[dict[str, Any]] = api.request(
            "GET", f"/api/queues/{quote(api.vhost, safe='')}?columns={_RATE_COLUMNS}"
        )
    except (ConveyorError, LookupError, OSError, ValueError) as exc:
        logger.info("The queues page could not read rates: %s", exc)
        return {}, f"Rates are not available: {exc}"
    rates: dict[str, dict[str, float | None]] = {}
    for queue in found:
        figures = queue.get("message_stats") or {}
        rates[queue["name"]] = {name: (figures.get(f"{name}_details") or {}).get("rate") for name, _ in RATES}
    return rates, None


def routes(console: Console) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        rows, note = await console.blocking(lambda: queue_rows(console.runtime))
        return console.render(request, "queues.html", title="Queues", rows=rows, note=note, rates=RATES)

    return [Route("/queues", listing, methods=["GET"])]
