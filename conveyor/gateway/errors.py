"""JSON error responses: every 4xx/5xx the gateway sends has an ``error`` that says what went wrong."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

_DEFAULT_MESSAGES = {
    404: "Not found",
    405: "Method not allowed",
}


def json_error(status: int, error: str, **details: Any) -> JSONResponse:
    """``{"error": "...", **details}`` with ``status``."""
    return JSONResponse({"error": error, **details}, status_code=status)


def state_unavailable() -> JSONResponse:
    """The 503 of a request the state store could not serve: the client is to retry it."""
    return json_error(503, "The state store is unreachable. Try again shortly.")


async def http_exception(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's 404/405 (and any HTTPException) as JSON."""
    assert isinstance(exc, HTTPException)
    message = _DEFAULT_MESSAGES.get(exc.status_code, exc.detail)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    response = json_error(exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
