"""Build the gateway's Starlette app from the runtime's HTTP steps (``python -m gateway`` serves it)."""

from __future__ import annotations

import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from ..context import AnyContext
from ..declare.steps import Step
from ..errors import ConfigError
from ..messaging.publisher import Publisher
from ..metrics import metrics_app
from ..runtime import Runtime
from .admin import admin_app
from .errors import http_exception
from .health import health_endpoint
from .idempotency import IdempotencyKeys
from .lifespan import publisher_lifespan
from .loop_lag import LoopLag
from .middleware import GatewayMiddleware
from .openapi import openapi_route
from .paths import ADMIN_PREFIX, CONSOLE_PREFIX, RESERVED_PATHS, under
from .routing import Endpoint, path_route, step_endpoint
from .serving import PID_HEADER
from .tracing import RequestTracing

logger = logging.getLogger("conveyor.gateway")


def build_app(runtime: Runtime) -> Starlette:
    """One route per HTTP path (dispatching on method), ``GET /health`` and ``/_admin``; JSON errors throughout."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    keys = idempotency_keys(runtime)
    owners: dict[tuple[str, str], str] = {}
    for step in runtime.registry:
        for trigger in step.http_triggers:
            key = (trigger.method, trigger.path)
            if under(trigger.path, ADMIN_PREFIX):
                raise ConfigError(f"step {step.name}: paths under {ADMIN_PREFIX} are reserved for the admin endpoints")
            if under(trigger.path, CONSOLE_PREFIX):
                raise ConfigError(f"step {step.name}: paths under {CONSOLE_PREFIX} are reserved for the web console")
            if trigger.path in RESERVED_PATHS:
                raise ConfigError(f"step {step.name}: {trigger.path} is the gateway's own; choose another path")
            if key in owners:
                raise ConfigError(f"{trigger.method} {trigger.path} is declared by both {owners[key]} and {step.name}")
            owners[key] = step.name
            by_path.setdefault(trigger.path, {})[trigger.method] = step_endpoint(
                runtime.context, step, trigger, idempotency=keys
            )
    loop_lag = LoopLag()
    routes: list[BaseRoute] = [Route("/health", _with_pid(health_endpoint(runtime)), methods=["GET"], name="health")]
    routes.append(openapi_route(runtime))
    if runtime.config.admin.api_key:
        routes.append(Mount(ADMIN_PREFIX, app=admin_app(runtime, runtime.config.admin.api_key, loop_lag), name="admin"))
    else:
        logger.info(
            "The %s endpoints are off: set [admin] api_key or CONVEYOR_ADMIN_KEY to turn them on.", ADMIN_PREFIX
        )
    if runtime.config.console.enabled:
        from ..console import console_app  # here: the console imports the gateway's key check

        routes.append(Mount(CONSOLE_PREFIX, app=console_app(runtime, runtime.traces()), name="console"))
    if runtime.config.metrics.enabled:
        from ..console.access import ConsoleAccess

        # Same rule as the console: open on loopback, the [admin] api_key anywhere else.
        routes.append(Route("/metrics", ConsoleAccess(metrics_app(runtime), runtime, json_only=True), name="metrics"))
    routes += [path_route(path, endpoints) for path, endpoints in by_path.items()]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(GatewayMiddleware, max_body_size=runtime.config.gateway.max_body_size),
            # Only with tracing or metrics on: off, a request passes no tracing code at all.
            *([Middleware(RequestTracing, tracer=runtime.tracer)] if runtime.tracer.active else []),
        ],
        exception_handlers={HTTPException: http_exception},
        lifespan=publisher_lifespan(runtime, loop_lag),
    )


def idempotency_keys(runtime: Runtime) -> IdempotencyKeys:
    """What runs the HTTP steps' requests that carry an ``Idempotency-Key``, on the runtime's store."""

    def contexts(step: Step, *, trace_id: str, publisher: Publisher) -> AnyContext:
        return runtime.context(step, trace_id=trace_id, publisher=publisher)

    gateway = runtime.config.gateway
    return IdempotencyKeys(
        runtime.state,
        runtime.async_state,
        runtime.publisher,
        contexts,
        ttl=gateway.idempotency_ttl,
        lease=gateway.idempotency_lease,
    )


def _with_pid(endpoint: Endpoint) -> Endpoint:
    # Which of several gateway processes on one port answered (see conveyor.gateway.serving).
    async def answered_by(request: Request) -> Response:
        response = await endpoint(request)
        response.headers[PID_HEADER] = str(os.getpid())
        return response

    return answered_by
