"""Build the gateway's Starlette app from the runtime's HTTP steps."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from conveyor import ConfigError, Runtime

from .errors import http_exception
from .health import health_endpoint
from .lifespan import publisher_lifespan
from .middleware import GatewayMiddleware
from .routing import Endpoint, path_route, step_endpoint


def build_app(runtime: Runtime) -> Starlette:
    """One route per HTTP path (dispatching on method), plus ``GET /health``; JSON errors throughout."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    owners: dict[tuple[str, str], str] = {}
    for step in runtime.registry:
        for trigger in step.http_triggers:
            key = (trigger.method, trigger.path)
            if key in owners:
                raise ConfigError(f"{trigger.method} {trigger.path} is declared by both {owners[key]} and {step.name}")
            owners[key] = step.name
            by_path.setdefault(trigger.path, {})[trigger.method] = step_endpoint(runtime, step, trigger)
    routes = [Route("/health", health_endpoint(runtime), methods=["GET"], name="health")]
    routes += [path_route(path, endpoints) for path, endpoints in by_path.items()]
    return Starlette(
        routes=routes,
        middleware=[Middleware(GatewayMiddleware, max_body_size=runtime.config.gateway.max_body_size)],
        exception_handlers={HTTPException: http_exception},
        lifespan=publisher_lifespan(runtime),
    )
