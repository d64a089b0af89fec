"""Build the Dramatiq broker from config: RabbitMQ with publisher confirms, or in memory."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from .config import Config

logger = logging.getLogger("conveyor.broker")


class ConveyorRabbitmqBroker(RabbitmqBroker):
    """RabbitMQ broker whose per-queue prefetch enforces each step's ``concurrency``.

    Subclassed because Dramatiq has no hook for a per-queue prefetch: RabbitMQ hands a worker
    process at most ``concurrency`` unacknowledged messages of that step, and a message stays
    unacknowledged until its handler is done, so no more than that run at once, while the
    process's other threads stay free for other steps.
    """

    def __init__(self, *, concurrency: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.concurrency = dict(concurrency or {})

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        if queue_name == q_name(queue_name) and queue_name in self.concurrency:
            prefetch = min(prefetch, self.concurrency[queue_name])
        return super().consume(queue_name, prefetch=prefetch, timeout=timeout)


def build_broker(config: Config, middleware: list[Middleware], concurrency: dict[str, int]) -> dramatiq.Broker:
    """The broker every Conveyor process shares; ``middleware`` comes after Dramatiq's basics.

    ``concurrency`` maps queue names to how many of their messages may run at once per process.
    """
    stack: list[Middleware] = [TimeLimit(), ShutdownNotifications(), CurrentMessage(), AsyncIO(), *middleware]
    if config.broker.kind == "memory":
        logger.warning(
            "Using the in-memory broker: messages live only in this process and are LOST when it "
            "stops. Install RabbitMQ (apt-get install rabbitmq-server) for durable queues."
        )
        return StubBroker(middleware=stack)
    return ConveyorRabbitmqBroker(
        url=with_heartbeat(config.broker.url, config.broker.heartbeat),
        confirm_delivery=True,
        max_priority=config.broker.max_priority,
        concurrency=concurrency,
        middleware=stack,
    )


def with_heartbeat(url: str, heartbeat: int) -> str:
    """Add ``heartbeat`` (and a blocked-connection timeout) to an AMQP URL unless it sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    query.setdefault("blocked_connection_timeout", "30")
    return urlunsplit(parts._replace(query=urlencode(query)))
