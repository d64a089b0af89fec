"""``/flows`` and ``/flows/{flow}``: each flow's diagram with live counts per step (runs, errors and
dead letters of the last hour from the traces, queue depth from RabbitMQ)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import ConveyorError
from ..ops.queue_stats import QueueStats, queue_stats
from ..tracing.queries import StepCounts
from .diagram import NODE_HEIGHT, NODE_WIDTH, build_diagram, flow_names, steps_of
from .rendering import Console

logger = logging.getLogger("conveyor.console.flows")

#: Counts cover this many seconds back.
COUNT_WINDOW = 3600
#: Seconds the page waits for RabbitMQ's management API.
STATS_TIMEOUT = 2.0


@dataclass
class LiveCounts:
    """What the diagram overlays; a ``note`` says what could not be read."""

    runs: dict[str, StepCounts]
    queues: dict[str, QueueStats]
    notes: list[str]
    #: False when the traces could not be read: counts show as "-", not 0.
    runs_known: bool = True

    def count(self, step: str, outcome: str) -> int | str:
        counts = self.runs.get(step)
        if counts is None:
            return 0 if self.runs_known else "-"
        return int(getattr(counts, outcome))

    def queue(self, step: str, figure: str) -> int | str:
        stats = self.queues.get(step)
        return "-" if stats is None else int(getattr(stats, figure))


def routes(console: Console) -> list[BaseRoute]:
    async def index(request: Request) -> Response:
        flows = [(name, [s.name for s in steps_of(console.runtime, name)]) for name in flow_names(console.runtime)]
        return console.render(request, "flows.html", title="Flows", flows=flows)

    async def one(request: Request) -> Response:
        flow = request.path_params["flow"]
        diagram = build_diagram(console.runtime, flow)
        if diagram is None:
            known = ", ".join(flow_names(console.runtime)) or "none"
            return console.error(request, 404, f"No flow is called {flow!r}. The flows are: {known}.")
        live = await console.blocking(lambda: _live_counts(console))
        return console.render(
            request,
            "flow.html",
            title=f"Flow {flow}",
            diagram=diagram,
            live=live,
            node_width=NODE_WIDTH,
            node_height=NODE_HEIGHT,
        )

    return [Route("/flows", index, methods=["GET"]), Route("/flows/{flow}", one, methods=["GET"])]


def _live_counts(console: Console) -> LiveCounts:
    notes: list[str] = []
    runs: dict[str, StepCounts] = {}
    known = console.traces is not None
    if console.traces is None:
        notes.append("Tracing is off ([tracing] enabled = false): no run counts.")
    else:
        try:
            runs = console.traces.step_counts(since=time.time() - COUNT_WINDOW)
        except Exception as exc:  # an overlay: the diagram still shows without it
            logger.warning("The flow page could not read step counts: %s", exc)
            notes.append(f"The trace store could not be read ({type(exc).__name__}): no run counts.")
            known = False
    queues: dict[str, QueueStats] = {}
    try:
        queues = {s.step: s for s in queue_stats(console.runtime, timeout=STATS_TIMEOUT)}
    except (ConveyorError, OSError) as exc:
        notes.append(f"Queue depths are unknown (-): {exc}")
    return LiveCounts(runs, queues, notes, known)
