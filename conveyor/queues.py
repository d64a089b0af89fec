"""Declare every step's queues at start-up, and explain a queue that exists with other arguments."""

from __future__ import annotations

import logging

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from .errors import ConfigError

logger = logging.getLogger("conveyor.queues")

#: RabbitMQ's reply code when a queue exists with different arguments.
PRECONDITION_FAILED = 406


def declare_queues(broker: RabbitmqBroker, queue_names: list[str]) -> None:
    """Declare each queue with its delay and dead-letter queues, as Dramatiq would lazily.

    Raises :class:`ConfigError` naming the queue and the way out when RabbitMQ already has it
    with different arguments (typically another ``x-max-priority``), instead of letting pika's
    PRECONDITION_FAILED surface on the first message. An unreachable broker only logs a
    warning: the processes start and reconnect when RabbitMQ comes back.
    """
    try:
        connection = pika.BlockingConnection(broker.parameters)
    except pika.exceptions.AMQPConnectionError as exc:
        logger.warning("RabbitMQ is not reachable yet (%r); queues will be declared on first use.", exc)
        return
    try:
        channel = connection.channel()
        for name in queue_names:
            # The same arguments Dramatiq declares them with, so either may declare first.
            main_arguments = broker._build_queue_arguments(name)
            for declared, arguments in (
                (name, main_arguments),
                (dq_name(name), main_arguments),
                (xq_name(name), {"x-message-ttl": DEAD_MESSAGE_TTL}),
            ):
                try:
                    channel.queue_declare(declared, durable=True, arguments=arguments)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != PRECONDITION_FAILED:
                        raise
                    raise ConfigError(_mismatch(declared, broker.max_priority, exc.reply_text)) from None
    finally:
        if connection.is_open:
            connection.close()


def _mismatch(queue: str, max_priority: int | None, detail: str) -> str:
    return (
        f"RabbitMQ queue {queue!r} already exists with different arguments ({detail}). Conveyor declares "
        f"it with x-max-priority={max_priority} ([broker] max_priority in config.toml). To migrate: stop the "
        f"workers, let the queue drain (or move its messages with a shovel), delete it with "
        f"`rabbitmqctl delete_queue {queue}` or the management UI, then start again; or set "
        f"max_priority back to the queue's value."
    )
