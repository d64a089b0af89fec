"""Build the Dramatiq broker from config: RabbitMQ with publisher confirms, or in memory."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from .config import Config

logger = logging.getLogger("conveyor.broker")


def build_broker(config: Config, middleware: list[Middleware]) -> dramatiq.Broker:
    """The broker every Conveyor process shares; ``middleware`` comes after Dramatiq's basics."""
    stack: list[Middleware] = [TimeLimit(), ShutdownNotifications(), CurrentMessage(), AsyncIO(), *middleware]
    if config.broker.kind == "memory":
        logger.warning(
            "Using the in-memory broker: messages live only in this process and are LOST when it "
            "stops. Install RabbitMQ (apt-get install rabbitmq-server) for durable queues."
        )
        return StubBroker(middleware=stack)
    return RabbitmqBroker(
        url=with_heartbeat(config.broker.url, config.broker.heartbeat),
        confirm_delivery=True,
        middleware=stack,
    )


def with_heartbeat(url: str, heartbeat: int) -> str:
    """Add ``heartbeat`` (and a blocked-connection timeout) to an AMQP URL unless it sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    query.setdefault("blocked_connection_timeout", "30")
    return urlunsplit(parts._replace(query=urlencode(query)))
