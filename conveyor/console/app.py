"""The console's ASGI app: every page module's routes, behind :class:`~.access.ConsoleAccess`.

A page is a module with ``routes(console: Console) -> list[BaseRoute]``; list it in :data:`PAGES`
(and its nav entry in :data:`~.rendering.NAV`). See README-dev.md.
"""

from __future__ import annotations

from types import ModuleType

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..gateway.errors import json_error
from ..runtime import Runtime
from ..tracing.queries import TraceStore
from . import api, cron, dead_letters, endpoints, flows, login, logs, queues, state, traces
from .access import ConsoleAccess, route_path
from .rendering import HERE, Console, console_root

#: The modules whose routes make the console, in the order they are matched.
PAGES: tuple[ModuleType, ...] = (login, flows, traces, logs, api, queues, dead_letters, state, endpoints, cron)


def console_app(runtime: Runtime, traces: TraceStore | None) -> ASGIApp:
    """The web console, to mount at ``/_console`` (``traces``: ``None`` when tracing is off)."""
    console = Console(runtime, traces)

    async def home(request: Request) -> Response:
        return RedirectResponse(console_root(request) + "/flows", status_code=303)

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        if route_path(scope).startswith("/api/"):
            response = json_error(404, f"No console API at {request.url.path}")
        else:
            response = console.error(request, 404, f"There is no console page at {request.url.path}.")
        await response(scope, receive, send)

    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    for page in PAGES:
        routes += page.routes(console)
    return ConsoleAccess(Router(routes, default=not_found), runtime, denied=console.error)
