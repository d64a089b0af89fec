"""``/traces`` (the list, filtered and paged by the store) and ``/traces/{trace_id}`` (its waterfall;
``?fragment=1`` is the waterfall alone, which the page reloads while the trace is live)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..tracing.filters import trace_query
from ..tracing.queries import TRACE_STATUSES, TracePage
from .rendering import Console, console_root, tracing_off_message
from .waterfall import waterfall

#: The longest trace id a client may send (the gateway keeps 64 characters of x-request-id).
MAX_TRACE_ID = 64


def routes(console: Console) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        if console.traces is None:
            return console.error(request, 503, tracing_off_message(), title="Tracing is off")
        store = console.traces
        try:
            query = trace_query(request.query_params)
            page: TracePage = await console.blocking(lambda: store.traces(query))
        except ValueError as exc:  # BadFilter, or the store naming a field it refuses
            return console.error(request, 400, f"Bad filter: {exc}")
        params = {k: v for k, v in request.query_params.items() if v and k != "page"}
        last = max(1, -(-page.total // page.per_page))
        return console.render(
            request,
            "traces.html",
            title="Traces",
            page=page,
            params=params,
            statuses=TRACE_STATUSES,
            last=last,
            prev_link=_page_link(params, page.page - 1) if page.page > 1 else None,
            next_link=_page_link(params, page.page + 1) if page.page < last else None,
        )

    async def one(request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        if console.traces is None:
            return console.error(request, 503, tracing_off_message(), title="Tracing is off")
        store = console.traces
        detail = None if len(trace_id) > MAX_TRACE_ID else await console.blocking(lambda: store.trace(trace_id))
        if detail is None:
            return console.error(
                request, 404, f"No trace {trace_id[:MAX_TRACE_ID]!r} is kept (it may have been pruned)."
            )
        view = waterfall(detail, base=console_root(request))
        template = "_waterfall.html" if request.query_params.get("fragment") else "trace.html"
        return console.render(request, template, title=f"Trace {detail.summary.name}", detail=detail, view=view)

    return [Route("/traces", listing, methods=["GET"]), Route("/traces/{trace_id}", one, methods=["GET"])]


def _page_link(params: dict[str, str], page: int) -> str:
    return "?" + urlencode({**params, "page": str(page)})
