"""Routes for HTTP steps: parse and validate the request, run the handler, answer in JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conveyor import Context, Request, Runtime
from conveyor.errors import PublishError
from conveyor.runtime import new_trace_id
from conveyor.steps import Step
from conveyor.tracing import current_trace_id
from conveyor.triggers import HttpTrigger
from conveyor.workers import validation_errors

from .errors import json_error

logger = logging.getLogger("conveyor.gateway")

#: Nesting deeper than this is refused before it can exhaust the parser.
MAX_JSON_DEPTH = 64


class BadRequest(Exception):
    """A request the gateway refuses before the handler runs."""

    def __init__(self, status: int, error: str, **details: Any) -> None:
        super().__init__(error)
        self.response = json_error(status, error, **details)


Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


def path_route(path: str, endpoints: dict[str, Endpoint]) -> Route:
    """One route per path, dispatching on the method, so a 405 lists every allowed method."""

    async def dispatch(http_request: HTTPRequest) -> Response:
        method = http_request.method
        if method == "HEAD" and "HEAD" not in endpoints:
            method = "GET"  # Starlette allows HEAD wherever GET is; answer it as GET
        return await endpoints[method](http_request)

    return Route(path, dispatch, methods=list(endpoints), name=path)


def step_endpoint(runtime: Runtime, step: Step, trigger: HttpTrigger) -> Endpoint:
    """An endpoint that runs ``step`` for requests matching ``trigger``."""

    async def endpoint(http_request: HTTPRequest) -> Response:
        try:
            request = Request(
                method=http_request.method,
                path=http_request.url.path,
                path_params=dict(http_request.path_params),
                body=await _body(http_request, trigger),
                query=_query(http_request, trigger),
                headers=http_request.headers,
            )
        except BadRequest as exc:
            return exc.response
        ctx = Context(runtime, step, trace_id=http_request.headers.get("x-trace-id") or new_trace_id())
        current_trace_id.set(ctx.trace_id)  # state triggers fired by this request's writes carry it on
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
        return _response(result, trigger)

    return endpoint


async def _call(step: Step, request: Request, ctx: Context) -> Any:
    handler: Callable[..., Any] = step.handler
    if step.is_async:
        awaitable: Awaitable[Any] = handler(request, ctx)
        return await awaitable
    return await run_in_threadpool(handler, request, ctx)


async def _body(http_request: HTTPRequest, trigger: HttpTrigger) -> Any:
    if trigger.body is None:
        return None
    content_type = http_request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise BadRequest(
            415,
            f"Content-Type must be application/json, got {content_type or 'none'}",
        )
    raw = await http_request.body()
    if not raw.strip():
        raise BadRequest(400, "Request body is empty; send a JSON object")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(400, f"Malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"Malformed JSON: {exc}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise BadRequest(400, f"Malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return _validate(trigger.body, data, "Invalid request body")


def _query(http_request: HTTPRequest, trigger: HttpTrigger) -> Any:
    params = http_request.query_params
    if trigger.query is None:
        return dict(params)
    # A key given once is a string, given several times a list: what a model's list[str] expects.
    data = {key: values if len(values) > 1 else values[0] for key in params for values in [params.getlist(key)]}
    return _validate(trigger.query, data, "Invalid query string")


def _validate(model: type[BaseModel], data: Any, error: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(400, error, fields=validation_errors(exc)) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                nested.extend(v for v in item if isinstance(v, dict | list))
        level = nested
    return depth if not level else limit


def _response(result: Any, trigger: HttpTrigger) -> Response:
    if isinstance(result, Response):
        return result
    if not isinstance(result, dict) or ("status" not in result and "body" not in result):
        result = {"status": 200, "body": result}
    status = int(result.get("status", 200))
    body = result.get("body")
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", exclude_none=True)
    if status == 204 or body is None and status != 200:
        return Response(status_code=status, headers=result.get("headers"))
    return JSONResponse(body, status_code=status, headers=result.get("headers"))
