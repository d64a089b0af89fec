"""``/cron``: each cron step with its expression, time zone, next fire and last fires (with the outcome
of the trace each started), and ``POST /cron/{step}/fire``, which fires it now as its schedule would."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..declare.cron_expressions import parse_cron
from ..errors import ConveyorError
from ..runtime import Runtime
from ..scheduling import fire_cron_step
from ..tracing.queries import TraceQuery, TraceStore
from ..tracing.spans import Span
from .rendering import Console, console_root

logger = logging.getLogger("conveyor.console.cron")

#: Last fires shown per step.
LAST_FIRES = 10
#: Seconds "fire now" looks for the trace of its fire before it redirects back to this page instead.
FIND_TRACE_FOR = 2.0
FLASH_LIMIT = 400


@dataclass
class CronRow:
    """One cron step on the page; ``fires`` are ``(span, outcome of its trace or None)``, newest first."""

    step: str
    flow: str | None
    expression: str
    timezone: str
    next_fire: datetime | None
    last_tick: datetime | None
    fires: list[tuple[Span, str | None]] = field(default_factory=list)
    problem: str | None = None


def next_fire(expression: str, timezone: str, step: str, now: datetime | None = None) -> datetime | None:
    """When ``expression`` fires next after ``now`` (default: this moment), in ``timezone``."""
    zone = ZoneInfo(timezone)
    trigger = parse_cron(expression, timezone=timezone, step=step)
    fire: datetime | None = trigger.get_next_fire_time(None, now or datetime.now(zone))
    return fire


def cron_rows(runtime: Runtime, traces: TraceStore | None) -> tuple[list[CronRow], list[str]]:
    """Every cron step's row, and notes on what could not be read."""
    timezone = runtime.config.scheduler.timezone
    notes: list[str] = []
    if traces is None:
        notes.append("Tracing is off ([tracing] enabled = false): no last fires.")
    rows = []
    for step, expression in runtime.cron_steps():
        row = CronRow(step.name, next(iter(step.flows), None), expression, timezone, None, None)
        try:
            row.next_fire = next_fire(expression, timezone, step.name)
        except ConveyorError as exc:
            row.problem = str(exc)
        try:
            row.last_tick = runtime.state.last_cron_tick(step.name)
        except ConveyorError as exc:
            notes.append(f"The state store could not be read: {exc}")
        if traces is not None:
            try:
                fires = traces.cron_fires(step.name, LAST_FIRES)
                row.fires = [(span, _outcome(traces, span.trace_id)) for span in fires]
            except Exception as exc:  # the page still shows the schedule without the history
                logger.warning("The cron page could not read the fires of %s: %s", step.name, exc)
                notes.append(f"The trace store could not be read ({type(exc).__name__}): no last fires.")
                traces = None
        rows.append(row)
    return rows, list(dict.fromkeys(notes))


def _outcome(traces: TraceStore, trace_id: str) -> str | None:
    """The status of the whole trace a fire started (``ok``, ``retried``, ``failed``)."""
    page = traces.traces(TraceQuery(trace_id=trace_id, per_page=1))
    return page.traces[0].status if page.traces else None


def _trace_of(runtime: Runtime, traces: TraceStore | None, message_id: str) -> str | None:
    """The trace id of the fire that sent ``message_id``, once its spans are in the store (or ``None``)."""
    if traces is None:
        return None
    if runtime.recorder is not None:
        runtime.recorder.flush(timeout=FIND_TRACE_FOR)
    deadline = time.monotonic() + FIND_TRACE_FOR
    while True:
        spans = traces.spans_of_message(message_id)
        if spans:
            return spans[0].trace_id
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def routes(console: Console) -> list[BaseRoute]:
    runtime = console.runtime

    async def listing(request: Request) -> Response:
        rows, notes = await console.blocking(lambda: cron_rows(runtime, console.traces))
        return console.render(
            request,
            "cron.html",
            title="Cron",
            rows=rows,
            notes=notes,
            flash=request.query_params.get("flash", "")[:FLASH_LIMIT],
            flash_message=request.query_params.get("message", "")[:64],
        )

    async def fire(request: Request) -> Response:
        step = request.path_params["step"]
        cron_steps = [s.name for s, _ in runtime.cron_steps()]
        if step not in cron_steps:
            known = ", ".join(cron_steps) or "none"
            return console.error(request, 404, f"No cron step is called {step!r}. The cron steps are: {known}.")
        try:
            message_id: str = await console.blocking(lambda: fire_cron_step(runtime, step))
        except ConveyorError as exc:
            return console.error(request, 503, f"{step} was not fired: {exc}. Try again shortly.")
        root = console_root(request)
        trace_id = await console.blocking(lambda: _trace_of(runtime, console.traces, message_id))
        if trace_id is not None:
            return RedirectResponse(f"{root}/traces/{quote(trace_id, safe='')}", status_code=303)
        query: dict[str, Any] = {"flash": f"Fired {step} by hand as message {message_id}.", "message": message_id}
        return RedirectResponse(f"{root}/cron?{urlencode(query)}", status_code=303)

    return [Route("/cron", listing, methods=["GET"]), Route("/cron/{step}/fire", fire, methods=["POST"])]
