"""Build the Dramatiq broker from config: RabbitMQ with publisher confirms, or in memory."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import MAX_ENQUEUE_ATTEMPTS, RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from ..config import Config
from .delays import DeclaredQueues, delay_queue

logger = logging.getLogger("conveyor.broker")


class ConveyorRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker with per-step concurrency and durable delays.

    Subclassed where Dramatiq has no hook:

    - ``consume``: a step's queue gets a prefetch of its ``concurrency``. RabbitMQ hands a
      worker process at most that many unacknowledged messages of the step, and a message
      stays unacknowledged until its handler is done, so no more than that run at once while
      the process's other threads stay free for other steps.
    - ``enqueue`` with a delay: the message goes to a TTL delay queue (see
      :mod:`conveyor.delays`) instead of being held by a worker until it is due.
    """

    def __init__(self, *, concurrency: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.concurrency = dict(concurrency or {})
        self.delay_queues_declared = DeclaredQueues()

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if not delay or delay <= 0:
            return super().enqueue(message)
        target = q_name(message.queue_name)
        name, arguments = delay_queue(target, delay)
        # The same connection-error handling as Dramatiq's enqueue, for the delay-queue route.
        for attempt in range(1, MAX_ENQUEUE_ATTEMPTS + 1):
            try:
                self.declare_queue(target, ensure=True)
                if self.delay_queues_declared.stale(name):
                    self.channel.queue_declare(name, durable=True, arguments=arguments)
                    self.delay_queues_declared.declared(name)
                self.emit_before("enqueue", message, delay)
                self.channel.basic_publish(
                    exchange="",
                    routing_key=name,
                    body=message.encode(),
                    properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
                    mandatory=True,
                )
                self.emit_after("enqueue", message, delay)
                return message
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
                del self.connection
                self.delay_queues_declared.forget(name)
                if attempt == MAX_ENQUEUE_ATTEMPTS:
                    raise ConnectionClosed(exc) from None
        raise AssertionError("unreachable")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        if queue_name == q_name(queue_name) and queue_name in self.concurrency:
            prefetch = min(prefetch, self.concurrency[queue_name])
        return super().consume(queue_name, prefetch=prefetch, timeout=timeout)


def build_broker(config: Config, middleware: list[Middleware], concurrency: dict[str, int]) -> dramatiq.Broker:
    """The broker every Conveyor process shares; ``middleware`` comes after Dramatiq's basics.

    ``concurrency`` maps queue names to how many of their messages may run at once per process.
    """
    stack = with_basics(middleware)
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


def with_basics(middleware: list[Middleware]) -> list[Middleware]:
    """Dramatiq's middleware that every Conveyor broker runs, then ``middleware``."""
    return [TimeLimit(), ShutdownNotifications(), CurrentMessage(), AsyncIO(), *middleware]


def with_heartbeat(url: str, heartbeat: int) -> str:
    """Add ``heartbeat`` (and a blocked-connection timeout) to an AMQP URL unless it sets them."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    query.setdefault("blocked_connection_timeout", "30")
    return urlunsplit(parts._replace(query=urlencode(query)))
