"""What the gateway opens when it starts and closes when it stops: its RabbitMQ publisher, its loop-lag probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from starlette.applications import Starlette

from ..lifecycle import exit_with_multiprocessing_parent
from ..messaging.async_publisher import AsyncPublisher
from ..runtime import Runtime
from .loop_lag import LoopLag


def publisher_lifespan(runtime: Runtime, loop_lag: LoopLag) -> Callable[[Starlette], Any]:
    """While the app runs, publish from its event loop with pipelined confirms (RabbitMQ only), and probe its lag."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A uvicorn worker process (`[gateway] workers` > 1) stops when the gateway's master dies.
        exit_with_multiprocessing_parent()
        loop_lag.start()
        broker = runtime.broker
        try:
            if not isinstance(broker, RabbitmqBroker):
                yield  # the in-memory broker publishes synchronously; nothing to open
                return
            # Every node, in this process's order: the publisher moves to the next one when its node goes.
            runtime.publisher.attach(AsyncPublisher(broker.parameters), asyncio.get_running_loop())
            try:
                yield
            finally:
                publisher = runtime.publisher.detach()
                if publisher is not None:
                    await publisher.close()
        finally:
            await loop_lag.stop()

    return lifespan
