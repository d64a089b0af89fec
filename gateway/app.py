"""Build the gateway's Starlette app from the runtime's HTTP steps."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from conveyor import ConfigError, Runtime

from .errors import http_exception
from .health import health_endpoint
from .middleware import GatewayMiddleware
from .routing import step_route


def build_app(runtime: Runtime) -> Starlette:
    """One route per HTTP trigger, plus ``GET /health``; JSON errors throughout."""
    routes: list[Route] = [Route("/health", health_endpoint(runtime), methods=["GET"], name="health")]
    seen: dict[tuple[str, str], str] = {}
    for step in runtime.registry:
        for trigger in step.http_triggers:
            key = (trigger.method, trigger.path)
            if key in seen:
                raise ConfigError(f"{trigger.method} {trigger.path} is declared by both {seen[key]} and {step.name}")
            seen[key] = step.name
            routes.append(step_route(runtime, step, trigger))
    return Starlette(
        routes=routes,
        middleware=[Middleware(GatewayMiddleware, max_body_size=runtime.config.gateway.max_body_size)],
        exception_handlers={HTTPException: http_exception},
    )
