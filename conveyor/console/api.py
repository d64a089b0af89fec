"""The console's JSON API: ``/api/traces`` and ``/api/logs`` (the pages' filters) and
``/api/traces/{trace_id}`` (what a live trace page polls). Errors are ``{"error": ...}`` with a
4xx, a bad filter's naming its ``field``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..gateway.errors import json_error
from ..tracing.filters import BadFilter, log_query, trace_query
from .rendering import Console, tracing_off_message
from .traces import MAX_TRACE_ID


def routes(console: Console) -> list[BaseRoute]:
    async def traces(request: Request) -> Response:
        store = console.traces
        if store is None:
            return json_error(503, tracing_off_message())
        try:
            query = trace_query(request.query_params)
            body: dict[str, Any] = await console.blocking(lambda: store.traces(query).to_json())
        except BadFilter as exc:
            return json_error(400, str(exc), field=exc.field)
        except ValueError as exc:
            return json_error(400, str(exc))
        return JSONResponse(body)

    async def trace(request: Request) -> Response:
        store = console.traces
        if store is None:
            return json_error(503, tracing_off_message())
        trace_id = request.path_params["trace_id"]
        detail = None if len(trace_id) > MAX_TRACE_ID else await console.blocking(lambda: store.trace(trace_id))
        if detail is None:
            return json_error(404, f"No trace {trace_id[:MAX_TRACE_ID]!r} is kept", traceId=trace_id[:MAX_TRACE_ID])
        return JSONResponse(detail.to_json())

    async def logs(request: Request) -> Response:
        store = console.traces
        if store is None:
            return json_error(503, tracing_off_message())
        try:
            query = log_query(request.query_params)
            lines = await console.blocking(lambda: store.logs(query))
        except BadFilter as exc:
            return json_error(400, str(exc), field=exc.field)
        except ValueError as exc:
            return json_error(400, str(exc))
        return JSONResponse({"logs": [line.to_json() for line in lines], "page": query.page, "perPage": query.per_page})

    return [
        Route("/api/traces", traces, methods=["GET"]),
        Route("/api/traces/{trace_id}", trace, methods=["GET"]),
        Route("/api/logs", logs, methods=["GET"]),
    ]
