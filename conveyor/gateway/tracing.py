"""The span of each HTTP request to a step: route, method, status, duration, a preview of the body.

The trace id is the client's ``x-trace-id`` if it sends one, else the trace id of a valid W3C
``traceparent`` header (whose span becomes the request span's parent), else the request id the
gateway answers in ``x-request-id``: what a user pastes into the console's trace page (see
:func:`~conveyor.gateway.middleware.request_ids`).
Requests to the gateway's own paths (the console, ``/_admin``, ``/metrics``, ``/health``,
``/openapi.json``) and to no route are not traced. Every answer names its trace in ``x-trace-id``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..tracing.spans import PAYLOAD_PREVIEW
from ..tracing.tracer import Tracer, current_span
from .paths import is_gateway_path


class RequestTracing:
    """ASGI middleware recording one ``http`` span per request to a step (inside GatewayMiddleware,
    which gives the request its id)."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # GatewayMiddleware, outside this one, read the request's ids from its headers.
        trace_id: str = scope["state"]["trace_id"]
        path: str = scope["path"]
        if not self.tracer.active or is_gateway_path(path):
            await self.app(scope, receive, send)
            return
        span = self.tracer.http_started(trace_id, scope["state"]["trace_parent"], scope["method"], path)
        status = 500
        body = bytearray()
        size = 0

        async def receive_body() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                size += len(chunk)
                if len(body) <= PAYLOAD_PREVIEW:
                    body.extend(chunk[: PAYLOAD_PREVIEW + 1 - len(body)])
            return message

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Which trace to open in the console, whatever ids the client sent.
                message["headers"] = [*message.get("headers", []), (b"x-trace-id", trace_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive_body, send_status)
        finally:
            current_span.set(None)
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is not None:
                self.tracer.http_ended(span, status=status, route=template, body=bytes(body), size=size)
