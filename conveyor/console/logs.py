"""``/logs``: log lines, newest first, by minimum level, step, trace, text and time; each links to its span."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..tracing.filters import LEVELS, log_query
from ..tracing.spans import LogLine
from .rendering import Console, tracing_off_message


def routes(console: Console) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if console.traces is None:
            return console.error(request, 503, tracing_off_message(), title="Tracing is off")
        store = console.traces
        try:
            query = log_query(request.query_params)
            lines: list[LogLine] = await console.blocking(lambda: store.logs(query))
        except ValueError as exc:
            return console.error(request, 400, f"Bad filter: {exc}")
        params = {k: v for k, v in request.query_params.items() if v and k != "page"}
        return console.render(
            request,
            "logs.html",
            title="Logs",
            lines=lines,
            query=query,
            params=params,
            levels=LEVELS,
            prev_link="?" + urlencode({**params, "page": query.page - 1}) if query.page > 1 else None,
            next_link="?" + urlencode({**params, "page": query.page + 1}) if len(lines) >= query.per_page else None,
        )

    return [Route("/logs", listing, methods=["GET"])]
