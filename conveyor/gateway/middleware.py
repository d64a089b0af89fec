"""ASGI middleware for the gateway: request ids, the body-size limit and last-resort errors."""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..tracing.spans import new_trace_id
from ..tracing.w3c import parse_traceparent

logger = logging.getLogger("conveyor.gateway")


def request_ids(headers: dict[bytes, bytes]) -> tuple[str, str, str | None]:
    """A request's id, its trace id and the span a W3C ``traceparent`` named as its parent.

    The request id is the client's ``x-request-id``, else the trace id of a valid
    ``traceparent`` (so ``x-request-id`` names the trace), else a new one. The trace id is the
    client's ``x-trace-id``, else the ``traceparent``'s, else the request id.
    """
    parent = parse_traceparent(headers.get(b"traceparent", b"").decode("latin-1"))
    request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or (parent[0] if parent else new_trace_id())
    chosen = headers.get(b"x-trace-id", b"").decode("latin-1").strip()[:64]
    if chosen:
        return request_id, chosen, None
    if parent is not None:
        return request_id, parent[0], parent[1]
    return request_id, request_id, None


class BodyTooLarge(Exception):
    """The request body passed the configured limit while it was being read."""


class GatewayMiddleware:
    """Give each request an id (``x-request-id``), cap its body, and turn a crash into a JSON 500.

    The body limit is checked against ``content-length`` before anything is read, and
    again while streaming, for chunked bodies. A crash is logged with its traceback and the
    request id; the client sees only ``{"error": "Internal server error", "requestId": ...}``.
    """

    def __init__(self, app: ASGIApp, *, max_body_size: int = 1024 * 1024) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = dict(scope["headers"])
        request_id, trace_id, parent_id = request_ids(headers)
        state = scope.setdefault("state", {})
        state["request_id"], state["trace_id"], state["trace_parent"] = request_id, trace_id, parent_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_size):
            await self._error(send_with_id, 413, self._too_large())
            return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send_with_id)
        except BodyTooLarge:
            if not started:
                await self._error(send_with_id, 413, self._too_large())
        except Exception:
            logger.exception("Unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id)
            if not started:
                await self._error(send_with_id, 500, {"error": "Internal server error", "requestId": request_id})

    def _too_large(self) -> dict[str, object]:
        return {
            "error": f"Request body is larger than the limit of {self.max_body_size} bytes",
            "limit": self.max_body_size,
        }

    @staticmethod
    async def _error(send: Send, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
