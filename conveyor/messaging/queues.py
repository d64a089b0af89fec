"""Declare every step's queues at start-up, and explain a queue that exists with other arguments."""

from __future__ import annotations

import logging
import re

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from ..errors import ConfigError

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
    mismatched: list[str] = []
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
                    detail = re.sub(r"^PRECONDITION_FAILED - | for queue '.*' in vhost '.*?'", "", exc.reply_text)
                    mismatched.append(f"{declared!r}: {detail}")
                    channel = connection.channel()  # RabbitMQ closed the channel; go on to list them all
    finally:
        if connection.is_open:
            connection.close()
    if mismatched:
        raise ConfigError(_mismatch(mismatched, broker.max_priority))


def _mismatch(queues: list[str], max_priority: int | None) -> str:
    names = " ".join(q.split(":")[0].strip("'") for q in queues)
    return (
        f"RabbitMQ already has queues declared with other arguments than Conveyor's "
        f"(x-max-priority={max_priority}, from [broker] max_priority in config.toml):\n  - "
        + "\n  - ".join(queues)
        + "\nTo migrate: stop the workers, let those queues drain (or move their messages with a shovel), "
        f"delete them (`for q in {names}; do rabbitmqctl delete_queue $q; done`, or in the management UI), "
        "then start again; or set max_priority back to the queues' value."
    )
