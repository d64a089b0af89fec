"""Who may use the console, and the cross-site check on every state-changing request.

* Loopback (``[gateway] host`` is 127.0.0.1, ::1 or localhost): open, for development.
* Any other host: every path needs ``[admin] api_key``, either as a header (``X-API-Key`` or
  ``Authorization: Bearer``) or as the session cookie the login page sets (an HMAC of the key,
  never the key; HttpOnly, SameSite=Strict). With no key configured, everything answers 403.
* Every POST (PUT, PATCH, DELETE) not authenticated by a header must carry the CSRF token (a
  hidden ``csrf_token`` form field or an ``X-CSRF-Token`` header) and an Origin or Referer of
  this host; a forged one gets a 403 and never reaches the page.

:class:`ConsoleAccess` wraps any ASGI app with these rules (``/metrics`` uses it too).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
from collections.abc import Callable
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..gateway.admin import presented_key
from ..gateway.serving import SHARED_SECRET_ENV
from ..runtime import Runtime

logger = logging.getLogger("conveyor.console.access")

#: The session cookie's name, and the login page's path under the console.
COOKIE = "conveyor_console"
LOGIN_PATH = "/login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE_TOKEN = "console_csrf"

#: ``denied(request, status, message)``: the page a refused request gets.
Denied = Callable[[Request, int, str], Response]


def needs_key(runtime: Runtime) -> bool:
    """Does the console need the API key? Yes unless the gateway listens on loopback only."""
    return not runtime.config.gateway.on_loopback


def session_cookie(api_key: str) -> str:
    """The cookie value for ``api_key``: an HMAC of it, so the key never sits in a browser."""
    return hmac.new(api_key.encode(), b"conveyor-console-session", hashlib.sha256).hexdigest()


def route_path(scope: Scope) -> str:
    """The request's path below the console's mount (``/traces`` for ``/_console/traces``)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def csrf_token(scope: Scope) -> str:
    """The CSRF token of this request's session (set by :class:`ConsoleAccess`; empty outside it)."""
    return str(scope.get("state", {}).get(_STATE_TOKEN, ""))


class ConsoleAccess:
    """Let a request through only under the console's access rule (see the module's docstring).

    Parameters:
      app: the ASGI app to protect.
      runtime: whose ``[gateway] host`` and ``[admin] api_key`` decide.
      json_only: answer refusals as JSON (an API such as ``/metrics``); otherwise paths under
        ``/api/`` get JSON and the rest HTML pages, a browser without a session is sent to the login page.
      denied: renders a refused page (default: a bare HTML page).
    """

    def __init__(
        self, app: ASGIApp, runtime: Runtime, *, json_only: bool = False, denied: Denied | None = None
    ) -> None:
        self.app = app
        self.json_only = json_only
        self.denied = denied or _bare_page
        self.key = runtime.config.admin.api_key if needs_key(runtime) else None
        self.closed = needs_key(runtime) and not self.key
        # Derived from the key when there is one, so several gateway processes on one port accept
        # each other's forms; without one, the secret their parent gave them all, or this process's own.
        shared = os.environ.get(SHARED_SECRET_ENV)
        self.secret = (
            hmac.new(self.key.encode(), b"conveyor-console-csrf", hashlib.sha256).digest()
            if self.key
            else shared.encode()
            if shared
            else os.urandom(32)
        )

    def token(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = route_path(scope)
        api = self.json_only or path.startswith("/api/") or path == "/api"
        if self.closed:
            message = (
                "The console is closed: the gateway listens on a non-loopback address and no [admin] api_key is set. "
                "Set [admin] api_key (or CONVEYOR_ADMIN_KEY) in config.toml and restart the gateway."
            )
            await self._refuse(request, 403, message, api)(scope, receive, send)
            return
        session, by_header = "loopback", False
        if self.key is not None:
            presented = presented_key(scope["headers"])
            cookie = request.cookies.get(COOKIE, "")
            if presented is not None:
                if not hmac.compare_digest(presented, self.key.encode()):
                    logger.warning("Refused %s %s: a wrong API key.", scope["method"], scope["path"])
                    await self._refuse(request, 401, "Wrong API key.", api)(scope, receive, send)
                    return
                session, by_header = "header", True
            elif cookie and hmac.compare_digest(cookie, session_cookie(self.key)):
                session = cookie
            elif path != LOGIN_PATH:
                await self._unauthenticated(request, api)(scope, receive, send)
                return
            else:
                session = "login"
        scope.setdefault("state", {})[_STATE_TOKEN] = self.token(session)
        if scope["method"] in SAFE_METHODS or by_header:
            await self.app(scope, receive, send)
            return
        if problem := _cross_site(request):
            logger.warning("Refused %s %s: %s.", scope["method"], scope["path"], problem)
            await self._refuse(request, 403, f"Refused a cross-site request: {problem}.", api)(scope, receive, send)
            return
        body = await _read_body(receive)
        if path != LOGIN_PATH and not hmac.compare_digest(_presented_token(scope, body), self.token(session)):
            logger.warning("Refused %s %s: no valid CSRF token.", scope["method"], scope["path"])
            message = "Refused: the form's security token is missing or stale. Reload the page and try again."
            await self._refuse(request, 403, message, api)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _refuse(self, request: Request, status: int, message: str, api: bool) -> Response:
        if api:
            response: Response = JSONResponse({"error": message}, status_code=status)
        else:
            response = self.denied(request, status, message)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="conveyor-console"'
        return response

    def _unauthenticated(self, request: Request, api: bool) -> Response:
        if api or request.method not in SAFE_METHODS:
            message = "Log in first: send the [admin] api_key in an X-API-Key header or as Authorization: Bearer <key>."
            return self._refuse(request, 401, message, api)
        root = str(request.scope.get("root_path", "")).rstrip("/")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{root}{LOGIN_PATH}?next={quote(target)}", status_code=303)


def _cross_site(request: Request) -> str | None:
    """Why this request may come from another site (its Origin or Referer is not this host), or ``None``."""
    host = request.headers.get("host", "")
    origin = request.headers.get("origin")
    if origin is not None:
        return None if urlsplit(origin).netloc == host and host else f"its Origin {origin!r} is not {host!r}"
    referer = request.headers.get("referer")
    if referer is not None:
        return None if urlsplit(referer).netloc == host and host else f"its Referer is not {host!r}"
    return "it carries neither an Origin nor a Referer header"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _presented_token(scope: Scope, body: bytes) -> str:
    for name, value in scope["headers"]:
        if name == CSRF_HEADER:
            return str(value.decode("latin-1"))
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
    if content_type == b"application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD)
        if values:
            return values[0]
    return ""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's later messages."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _bare_page(request: Request, status: int, message: str) -> Response:
    return HTMLResponse(f"<!doctype html><title>{status}</title><p>{html.escape(message)}</p>", status_code=status)


def login_cookie(response: Response, api_key: str, *, path: str, secure: bool) -> None:
    """Set the session cookie on ``response``."""
    response.set_cookie(
        COOKIE, session_cookie(api_key), path=path or "/", httponly=True, samesite="strict", secure=secure
    )


def logout_cookie(response: Response, *, path: str) -> None:
    response.delete_cookie(COOKIE, path=path or "/", httponly=True, samesite="strict")
