"""Declare every step's queues at start-up, and explain a queue that exists with other arguments."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name

from ..errors import ConfigError
from .connections import describe_nodes, node_parameters

logger = logging.getLogger("conveyor.queues")

#: RabbitMQ's reply code when a queue exists with different arguments.
PRECONDITION_FAILED = 406

QueueType = Literal["classic", "quorum"]

#: A replicated queue: it survives the loss of a minority of the cluster's nodes.
QUORUM = {"x-queue-type": "quorum"}

#: Dead-letter (or expire into the target queue) at least once, not at most once as quorum
#: queues do by default; RabbitMQ requires ``reject-publish`` overflow for it.
AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def dead_letter_arguments(queue_type: QueueType) -> dict[str, Any]:
    """The arguments of a step's ``.XQ``: dead messages are kept for Dramatiq's 7 days."""
    arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
    return {**arguments, **QUORUM} if queue_type == "quorum" else arguments


def declare_queues(broker: RabbitmqBroker, queue_names: list[str]) -> None:
    """Declare each queue with its delay and dead-letter queues, as Dramatiq would lazily.

    Raises :class:`ConfigError` naming the queue and the way out when RabbitMQ already has it
    with different arguments (typically another ``x-max-priority``), instead of letting pika's
    PRECONDITION_FAILED surface on the first message. An unreachable broker only logs a
    warning: the processes start and reconnect when RabbitMQ comes back.
    """
    nodes = node_parameters(broker)
    try:
        connection = pika.BlockingConnection(nodes)
    except pika.exceptions.AMQPConnectionError as exc:
        logger.warning(
            "RabbitMQ is not reachable yet at %s (%r); queues will be declared on first use.",
            describe_nodes(nodes),
            exc,
        )
        return
    queue_type: QueueType = getattr(broker, "queue_type", "classic")
    mismatched: list[str] = []
    try:
        channel = connection.channel()
        for name in queue_names:
            # The same arguments Dramatiq declares them with, so either may declare first.
            main_arguments = broker._build_queue_arguments(name)
            for declared, arguments in (
                (name, main_arguments),
                (dq_name(name), main_arguments),
                (xq_name(name), dead_letter_arguments(queue_type)),
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
        raise ConfigError(_mismatch(mismatched, broker.max_priority, queue_type))


#: The setting in config.toml behind each queue argument Conveyor declares.
_SETTINGS = {
    "x-queue-type": "queue_type",
    "x-max-priority": "max_priority",
    "x-delivery-limit": "delivery_limit",
    "x-dead-letter-strategy": "queue_type",
    "x-overflow": "queue_type",
}


def _mismatch(queues: list[str], max_priority: int | None, queue_type: QueueType = "classic") -> str:
    names = " ".join(q.split(":")[0].strip("'") for q in queues)
    settings = {setting for argument, setting in _SETTINGS.items() if any(f"'{argument}'" in q for q in queues)}
    if queue_type == "quorum":
        # RabbitMQ names the first argument that differs, often not x-queue-type: say it anyway.
        settings |= {"queue_type", "delivery_limit"}
    ours = {
        "queue_type": f"x-queue-type={queue_type}, from [broker] queue_type; a queue cannot change its type",
        "max_priority": f"x-max-priority={max_priority}, from [broker] max_priority"
        + (" (none on quorum queues)" if queue_type == "quorum" else ""),
        "delivery_limit": "x-delivery-limit, from [broker] delivery_limit",
    }
    chosen = [ours[setting] for setting in ours if setting in settings] or [ours["max_priority"]]
    way_back = " or ".join(f"[broker] {setting}" for setting in ours if setting in settings) or "[broker] max_priority"
    return (
        f"RabbitMQ already has queues declared with other arguments than Conveyor's "
        f"({'; '.join(chosen)} in config.toml):\n  - "
        + "\n  - ".join(queues)
        + "\nTo migrate: stop the workers, let those queues drain (or move their messages with a shovel), "
        f"delete them (`for q in {names}; do rabbitmqctl delete_queue $q; done`, or in the management UI), "
        f"then start again; or set {way_back} back to the queues' value."
    )
