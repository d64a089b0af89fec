"""What the gateway opens when it starts and closes when it stops: its RabbitMQ publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from starlette.applications import Starlette

from conveyor import Runtime
from conveyor.async_publisher import AsyncPublisher


def publisher_lifespan(runtime: Runtime) -> Callable[[Starlette], Any]:
    """Publish from the event loop with pipelined confirms while the app runs (RabbitMQ only)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        broker = runtime.broker
        if not isinstance(broker, RabbitmqBroker):
            yield  # the in-memory broker publishes synchronously; nothing to open
            return
        parameters = broker.parameters[0] if isinstance(broker.parameters, list) else broker.parameters
        runtime.async_publisher = AsyncPublisher(parameters)
        runtime.async_loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            await runtime.async_publisher.close()
            runtime.async_publisher = runtime.async_loop = None

    return lifespan
