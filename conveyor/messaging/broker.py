"""Build the Dramatiq broker from config: RabbitMQ with publisher confirms, or in memory."""

from __future__ import annotations

import logging
import random
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from ..config import Config
from .connections import describe_nodes, node_order, node_parameters
from .delays import DeclaredQueues, delay_queue
from .keepalive import KeepAliveRabbitmqBroker, holding_connection
from .queues import AT_LEAST_ONCE, QUORUM, QueueType, dead_letter_arguments

logger = logging.getLogger("conveyor.broker")

#: Seconds between attempts of an enqueue that failed (before jitter): about 3 s in all, which
#: spans a quorum queue's leader election or a reconnect to another node.
ENQUEUE_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def enqueue_pauses(rng: random.Random | None = None) -> list[float]:
    """:data:`ENQUEUE_PAUSES` with ±20% jitter, so publishers that failed together retry apart."""
    rng = rng or random.Random()
    return [pause * rng.uniform(0.8, 1.2) for pause in ENQUEUE_PAUSES]


class ConveyorRabbitmqBroker(KeepAliveRabbitmqBroker):
    """Dramatiq's RabbitMQ broker with per-step concurrency and durable delays.

    Subclassed where Dramatiq has no hook:

    - ``consume``: a step's queue gets a prefetch of its ``concurrency``. RabbitMQ hands a
      worker process at most that many unacknowledged messages of the step, and a message
      stays unacknowledged until its handler is done, so no more than that run at once while
      the process's other threads stay free for other steps.
    - ``enqueue`` with a delay: the message goes to a TTL delay queue (see
      :mod:`conveyor.delays`) instead of being held by a worker until it is due.
    - ``enqueue``: Dramatiq retries a failed publish without a pause; here the attempts back
      off (:data:`ENQUEUE_PAUSES`) so that they outlast a leader election.
    - ``_build_queue_arguments`` and ``_declare_xq_queue``: with ``queue_type="quorum"``,
      every queue is a quorum queue, and a message is dead-lettered (at least once) after
      ``delivery_limit`` deliveries.
    """

    def __init__(
        self,
        *,
        concurrency: dict[str, int] | None = None,
        queue_type: QueueType = "classic",
        delivery_limit: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.concurrency = dict(concurrency or {})
        self.queue_type: QueueType = queue_type
        self.delivery_limit = delivery_limit
        self.delay_queues_declared = DeclaredQueues()
        if queue_type == "quorum" and self.max_priority:
            raise ValueError("quorum queues have no x-max-priority on RabbitMQ 3.x: pass max_priority=None")

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        """Publish ``message`` (after ``delay`` ms), confirmed by RabbitMQ.

        Raises ``dramatiq.errors.ConnectionClosed`` naming the nodes when every attempt
        failed: one, then one after each pause of :data:`ENQUEUE_PAUSES` (about 3 s in all).
        """
        target = q_name(message.queue_name)
        routing_key, arguments = self.delay_queue(target, delay) if delay and delay > 0 else (target, None)
        pauses = enqueue_pauses()
        for attempt in range(1, len(pauses) + 2):
            try:
                self._publish(message, target, routing_key, arguments, delay)
                return message
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError, ConnectionClosed) as exc:
                self._forget_after(exc, target, routing_key)
                if attempt > len(pauses):
                    raise ConnectionClosed(
                        f"gave up publishing to {routing_key!r} after {attempt} attempts on RabbitMQ at "
                        f"{describe_nodes(node_parameters(self))}: {exc!r}"
                    ) from None
                pause = pauses[attempt - 1]
                logger.info("Enqueue attempt %d to %r failed (%r); next in %.2fs", attempt, routing_key, exc, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")

    @holding_connection  # the keeper of idle connections stays off this one meanwhile
    def _publish(
        self,
        message: dramatiq.Message[Any],
        target: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
        delay: int | None,
    ) -> None:
        self.declare_queue(target, ensure=True)
        if arguments is not None and self.delay_queues_declared.stale(routing_key):
            self.channel.queue_declare(routing_key, durable=True, arguments=arguments)
            self.delay_queues_declared.declared(routing_key)
        self.emit_before("enqueue", message, delay)
        self.channel.basic_publish(
            exchange="",
            routing_key=routing_key,
            body=message.encode(),
            properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
            mandatory=True,  # an unroutable message raises UnroutableError (confirms are on)
        )
        self.emit_after("enqueue", message, delay)

    def _forget_after(self, exc: Exception, target: str, routing_key: str) -> None:
        # A new connection and channel for the next attempt, the queues declared again.
        del self.connection
        self.delay_queues_declared.forget(routing_key)
        if isinstance(exc, pika.exceptions.UnroutableError):
            self.queues_pending.add(target)
        if isinstance(exc, pika.exceptions.AMQPConnectionError | ConnectionClosed):
            # Start the next connection at the next node: this one may be gone.
            nodes = node_parameters(self)
            if len(nodes) > 1:
                self.parameters = nodes[1:] + nodes[:1]

    def delay_queue(self, queue_name: str, delay_ms: int) -> tuple[str, dict[str, Any]]:
        """The delay queue of ``queue_name`` for ``delay_ms``, with this broker's queue type."""
        return delay_queue(queue_name, delay_ms, self.queue_type)

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if self.queue_type == "quorum":
            arguments |= QUORUM | AT_LEAST_ONCE | {"x-delivery-limit": self.delivery_limit}
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=xq_name(queue_name), durable=True, arguments=dead_letter_arguments(self.queue_type)
        )

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
    quorum = config.broker.queue_type == "quorum"
    return ConveyorRabbitmqBroker(
        # Each process its own order of the nodes, so that connections spread over them.
        url=[with_heartbeat(url, config.broker.heartbeat) for url in node_order(config.broker.urls)],
        confirm_delivery=True,
        max_priority=None if quorum else config.broker.max_priority,
        concurrency=concurrency,
        queue_type=config.broker.queue_type,
        delivery_limit=config.broker.delivery_limit,
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
