"""``/login`` and ``/logout``: trade the ``[admin] api_key`` for a session cookie, and back."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .access import LOGIN_PATH, login_cookie, logout_cookie, needs_key
from .rendering import Console, console_root


def routes(console: Console) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        if not needs_key(console.runtime):
            return RedirectResponse(console_root(request) + "/flows", status_code=303)
        return console.render(
            request, "login.html", title="Log in", next=_next(request, request.query_params.get("next"))
        )

    async def login(request: Request) -> Response:
        key = console.runtime.config.admin.api_key
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        presented = (form.get("api_key") or [""])[0]
        target = _next(request, (form.get("next") or [""])[0])
        if not needs_key(console.runtime) or key is None:
            return RedirectResponse(target, status_code=303)
        if not presented or not hmac.compare_digest(presented.encode(), key.encode()):
            return console.render(
                request,
                "login.html",
                status=401,
                title="Log in",
                next=target,
                problem="That is not the [admin] api_key of this gateway.",
            )
        response = RedirectResponse(target, status_code=303)
        login_cookie(response, key, path=console_root(request), secure=request.url.scheme == "https")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(console_root(request) + LOGIN_PATH, status_code=303)
        logout_cookie(response, path=console_root(request))
        return response

    return [
        Route(LOGIN_PATH, login_page, methods=["GET"]),
        Route(LOGIN_PATH, login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def _next(request: Request, value: str | None) -> str:
    """Where to go after logging in: a path of this console only (never another site)."""
    root = console_root(request)
    if value and value.startswith(root + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return root + "/flows"
