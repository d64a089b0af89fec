"""GET /health: can the gateway reach RabbitMQ and the state store?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..runtime import Runtime


def health_endpoint(runtime: Runtime) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def health(request: Request) -> JSONResponse:
        checks = {
            "rabbitmq": await runtime.publisher.off_loop(lambda: _broker_check(runtime)),
            "state": await runtime.publisher.off_loop(lambda: _state_check(runtime)),
        }
        healthy = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503
        )

    return health


def _broker_check(runtime: Runtime) -> str:
    broker = runtime.broker
    if not isinstance(broker, RabbitmqBroker):
        return "ok"  # the in-memory broker is always there
    for attempt in (1, 2):
        try:
            broker.connection.process_data_events(0)
            return "ok"
        except Exception as exc:  # any failure means "not reachable"; the detail helps the operator
            # A connection RabbitMQ dropped while idle is not an outage: reconnect once before saying so.
            del broker.connection
            if attempt == 2:
                return f"unreachable: {type(exc).__name__}"
    return "unreachable"


def _state_check(runtime: Runtime) -> str:
    try:
        runtime.state.ping()
        return "ok"
    except Exception as exc:
        return f"unreachable: {exc}"
