"""Routes for HTTP steps: parse and validate the request, run the handler, answer in JSON."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..context import AnyContext
from ..declare.requests import Request
from ..declare.steps import Step
from ..declare.triggers import HttpTrigger
from ..errors import PublishError, StateKeyError, StateUnavailableError
from ..messaging.publisher import Publisher
from ..tracing import current_trace_id
from ..tracing.tracer import current_span
from .errors import json_error, state_unavailable
from .idempotency import METHODS, IdempotencyKeys
from .parsing import BadRequest, check_path_params, read_body, read_query

logger = logging.getLogger("conveyor.gateway")


Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


class ContextFactory(Protocol):
    """Makes the ``ctx`` of one request (the runtime's :meth:`~conveyor.runtime.Runtime.context`)."""

    def __call__(self, step: Step, *, trace_id: str) -> AnyContext: ...


def path_route(path: str, endpoints: dict[str, Endpoint]) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed method."""

    async def dispatch(http_request: HTTPRequest) -> Response:
        method = http_request.method
        if method == "HEAD" and "HEAD" not in endpoints:
            method = "GET"  # Starlette allows HEAD wherever GET is; answer it as GET
        return await endpoints[method](http_request)

    return Route(path, dispatch, methods=list(endpoints), name=path)


def step_endpoint(
    make_context: ContextFactory, step: Step, trigger: HttpTrigger, *, idempotency: IdempotencyKeys | None = None
) -> Endpoint:
    """An endpoint that runs ``step`` for requests matching ``trigger``.

    With ``idempotency`` (and a POST, PUT or PATCH trigger), a request carrying an
    ``Idempotency-Key`` runs once per key (:mod:`~conveyor.gateway.idempotency`).
    """
    keys = idempotency if trigger.method in METHODS else None

    async def endpoint(http_request: HTTPRequest) -> Response:
        try:
            key = keys.key_of(http_request) if keys is not None else None
            check_path_params(http_request.path_params)
            request = Request(
                method=http_request.method,
                path=http_request.url.path,
                path_params=dict(http_request.path_params),
                body=await read_body(http_request, trigger),
                query=read_query(http_request, trigger),
                headers=http_request.headers,
            )
        except BadRequest as exc:
            return exc.response
        # The request id doubles as the trace id unless the client sends one to follow.
        trace_id: str = http_request.scope["state"]["trace_id"]  # GatewayMiddleware's (request_ids)
        if key is None or keys is None:
            return await run_step(step, trigger, request, make_context(step, trace_id=trace_id))

        contexts = keys.contexts

        def staged(publisher: Publisher) -> Awaitable[Response]:
            return run_step(step, trigger, request, contexts(step, trace_id=trace_id, publisher=publisher))

        return await keys.run(step, key, http_request, staged)

    return endpoint


async def run_step(step: Step, trigger: HttpTrigger, request: Request, ctx: AnyContext) -> Response:
    """Run ``step``'s handler on a parsed ``request`` and answer; what the broker or the store refused is a 4xx/5xx."""
    current_trace_id.set(ctx.trace_id)  # state triggers fired by this request's writes carry it on
    if (span := current_span.get()) is not None and span.kind == "http":
        span.step = step.name
    try:
        result = await _call(step, request, ctx)
        await ctx.settle()
    except PublishError as exc:
        # Never answer 2xx for work RabbitMQ did not confirm: the client must retry.
        logger.error("Enqueue failed in step %s: %s", step.name, exc)
        return json_error(
            503,
            "The request could not be queued: the message broker did not confirm it. Try again shortly.",
        )
    except StateKeyError as exc:
        # A name the store cannot hold (a NUL, an empty or over-long key), most often taken
        # from the request: the same 400 on every backend, where PostgreSQL would fail.
        logger.warning("Step %s: %s", step.name, exc)
        return json_error(400, str(exc))
    except StateUnavailableError as exc:
        logger.error("State store unreachable in step %s: %s", step.name, exc)
        return state_unavailable()
    return shape_response(result, trigger)


async def _call(step: Step, request: Request, ctx: AnyContext) -> Any:
    handler: Callable[..., Any] = step.handler
    if step.is_async:
        awaitable: Awaitable[Any] = handler(request, ctx)
        return await awaitable
    return await run_in_threadpool(handler, request, ctx)


def shape_response(result: Any, trigger: HttpTrigger) -> Response:
    """The HTTP response for what a handler returned: ``{"status", "body", "headers"}``, a bare body or a Response."""
    if isinstance(result, Response):
        return result
    if not isinstance(result, dict) or ("status" not in result and "body" not in result):
        result = {"status": 200, "body": result}
    status = int(result.get("status", 200))
    body = result.get("body")
    model = trigger.responses.get(status)
    if model is not None and not isinstance(body, BaseModel) and body is not None:
        # The declared response schema shapes the body (and catches a handler answering off-schema).
        body = model.model_validate(body)
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", exclude_none=True)
    if status == 204 or body is None and status != 200:
        return Response(status_code=status, headers=result.get("headers"))
    return JSONResponse(body, status_code=status, headers=result.get("headers"))
