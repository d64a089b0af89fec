"""``/_admin``: queue stats and the dead-letter queue over HTTP, for whoever holds the API key.

:func:`gateway.build_app` mounts these only when ``[admin] api_key`` (or ``CONVEYOR_ADMIN_KEY``)
is set; without a key every ``/_admin`` path answers 404. Every request must carry the key, in
``X-API-Key: <key>`` or ``Authorization: Bearer <key>``::

    GET    /_admin/stats
    GET    /_admin/dead-letters                            ?limit=N (messages per step, default 100)
    GET    /_admin/dead-letters/{step}                     ?limit=N
    GET    /_admin/dead-letters/{step}/{messageId}
    POST   /_admin/dead-letters/{step}/replay              every dead message of the step
    POST   /_admin/dead-letters/{step}/{messageId}/replay
    DELETE /_admin/dead-letters/{step}                     purge, for good
    GET    /_admin/loop                                    the event loop's lag (see loop_lag.py)
    POST   /_admin/loop/reset
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    BrokerUnavailableError,
    ConveyorError,
    DeadMessageNotFoundError,
    PublishError,
    UnknownStepError,
    UnsupportedBrokerError,
)
from ..ops.dlq import DeadLetterQueue
from ..ops.queue_stats import queue_stats
from ..runtime import Runtime
from .errors import json_error
from .loop_lag import LoopLag
from .routing import path_route

logger = logging.getLogger("conveyor.gateway.admin")

#: The most messages one listing returns per step.
MAX_LIMIT = 1000

_STATUS: tuple[tuple[type[ConveyorError], int], ...] = (
    (UnknownStepError, 404),
    (DeadMessageNotFoundError, 404),
    (UnsupportedBrokerError, 501),
    (BrokerUnavailableError, 503),
    (PublishError, 503),
)


def admin_app(runtime: Runtime, api_key: str, loop_lag: LoopLag | None = None) -> ASGIApp:
    """The admin endpoints behind :class:`APIKeyAuth`, to mount at ``/_admin``."""
    admin = _Endpoints(runtime)
    lag = loop_lag or LoopLag()

    async def loop_figures(request: Request) -> Response:
        return JSONResponse(lag.figures())

    async def loop_reset(request: Request) -> Response:
        lag.reset()
        return JSONResponse(lag.figures())

    routes = [
        path_route("/stats", {"GET": admin.stats}),
        path_route("/dead-letters", {"GET": admin.overview}),
        path_route("/dead-letters/{step}", {"GET": admin.listing, "DELETE": admin.purge}),
        path_route("/dead-letters/{step}/replay", {"POST": admin.replay_all}),
        path_route("/dead-letters/{step}/{message_id}", {"GET": admin.show}),
        path_route("/dead-letters/{step}/{message_id}/replay", {"POST": admin.replay}),
        path_route("/loop", {"GET": loop_figures}),
        path_route("/loop/reset", {"POST": loop_reset}),
    ]
    return APIKeyAuth(Router(routes), api_key=api_key)


class APIKeyAuth:
    """Let a request through only if it carries the API key; answer a JSON 401 otherwise.

    The key is read from ``X-API-Key`` or ``Authorization: Bearer``, compared in constant
    time, and never logged.

    Parameters:
      app: the ASGI app to protect.
      api_key: the key; must not be empty.
    """

    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        if not api_key:
            raise ValueError("APIKeyAuth needs a key; leave the admin endpoints unmounted instead")
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = presented_key(scope["headers"])
        if presented is not None and hmac.compare_digest(presented, self._key):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        problem = "no API key" if presented is None else "a wrong API key"
        logger.warning("Refused %s %s from %s: %s.", scope["method"], scope["path"], client[0], problem)
        if presented is None:
            error = "Missing API key: send it in an X-API-Key header or as Authorization: Bearer <key>"
        else:
            error = "Invalid API key"
        response = json_error(401, error)
        response.headers["WWW-Authenticate"] = 'Bearer realm="conveyor-admin"'
        await response(scope, receive, send)


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer``; ``None`` if neither holds one."""
    for name, value in headers:
        if name == b"x-api-key" and value.strip():
            return value.strip()
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


class _Endpoints:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def stats(self, request: Request) -> Response:
        return await self._answer(lambda: {"steps": [s.to_json() for s in queue_stats(self.runtime)]})

    async def overview(self, request: Request) -> Response:
        limit = _limit(request)
        if isinstance(limit, Response):
            return limit
        return await self._answer(lambda: {"steps": [s.to_json() for s in self._dlq().overview(limit=limit)]})

    async def listing(self, request: Request) -> Response:
        limit = _limit(request)
        if isinstance(limit, Response):
            return limit
        step = request.path_params["step"]
        return await self._answer(lambda: self._dlq().listing(step, limit=limit).to_json())

    async def show(self, request: Request) -> Response:
        step, message_id = request.path_params["step"], request.path_params["message_id"]
        return await self._answer(lambda: self._dlq().get(step, message_id).to_json())

    async def replay(self, request: Request) -> Response:
        step, message_id = request.path_params["step"], request.path_params["message_id"]
        return await self._answer(lambda: {"replayed": [self._dlq().replay(step, message_id).to_json()]})

    async def replay_all(self, request: Request) -> Response:
        step = request.path_params["step"]
        return await self._answer(lambda: {"replayed": [r.to_json() for r in self._dlq().replay_all(step)]})

    async def purge(self, request: Request) -> Response:
        step = request.path_params["step"]
        return await self._answer(lambda: self._dlq().purge(step).to_json())

    def _dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.runtime)

    async def _answer(self, work: Callable[[], dict[str, Any]]) -> Response:
        """Run blocking RabbitMQ work in the publisher threads; a Conveyor error becomes its JSON status."""
        try:
            # The publisher's threads keep a RabbitMQ connection each; pika must not block the event loop.
            body = await self.runtime.publisher.off_loop(work)
        except ConveyorError as exc:
            status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
            if status in (500, 503):
                logger.error("Admin request failed: %s", exc)
            return json_error(status, str(exc))
        return JSONResponse(body)


def _limit(request: Request) -> int | Response:
    text = request.query_params.get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        return json_error(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)
