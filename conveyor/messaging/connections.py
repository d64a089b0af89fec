"""Connections of the operator tools' own to RabbitMQ, beside Dramatiq's, and what they read with them."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import dramatiq
import pika
import pika.connection
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from ..errors import BrokerUnavailableError, UnsupportedBrokerError

#: RabbitMQ's reply code for a queue that does not exist.
NOT_FOUND = 404

T = TypeVar("T")


def node_order(nodes: Sequence[T], rng: random.Random | None = None) -> list[T]:
    """``nodes`` in an order of this process's own (a shuffle), every node kept.

    pika tries a list of nodes in order, so without it every process of a cluster would
    connect to the first node, and every queue a client declares would be led from there.
    """
    return (rng or random.Random()).sample(list(nodes), k=len(nodes))


def node_parameters(broker: RabbitmqBroker) -> list[pika.connection.Parameters]:
    """The connection parameters of every node the broker knows, in its order."""
    parameters = broker.parameters
    return list(parameters) if isinstance(parameters, list) else [parameters]


def describe_nodes(parameters: Sequence[pika.connection.Parameters]) -> str:
    """``host:port/vhost`` of each node, comma separated: for messages, so never with credentials."""
    return ", ".join(f"{p.host}:{p.port}/{unquote(p.virtual_host)}" for p in parameters)


def require_rabbitmq(broker: dramatiq.Broker, feature: str) -> RabbitmqBroker:
    """``broker`` as RabbitMQ; raises :class:`UnsupportedBrokerError` naming ``feature`` on the in-memory broker."""
    if not isinstance(broker, RabbitmqBroker):
        raise UnsupportedBrokerError(feature)
    return broker


@contextmanager
def own_connection(broker: RabbitmqBroker) -> Iterator[BlockingConnection]:
    """A connection of the caller's own to one of the broker's nodes (the first that answers), closed on exit.

    Closing it hands every message fetched with ``basic_get`` but not acknowledged back to
    its queue, in its old place: that is how the operator tools read a queue without taking
    anything out of it.
    """
    # pika tries each node in turn, in the broker's (this process's) order.
    parameters = node_parameters(broker)
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailableError(
            f"cannot reach RabbitMQ at {describe_nodes(parameters)} ({exc!r}); is it running? "
            "Check [broker] url in config.toml or CONVEYOR_BROKER_URL"
        ) from None
    try:
        yield connection
    except pika.exceptions.AMQPConnectionError as exc:
        raise BrokerUnavailableError(f"lost the connection to RabbitMQ ({exc!r}); try again") from None
    except pika.exceptions.AMQPChannelError as exc:
        raise BrokerUnavailableError(
            f"RabbitMQ refused: {exc!r}; check the permissions of the user in [broker] url"
        ) from None
    finally:
        if connection.is_open:
            connection.close()


def queue_depth(channel: BlockingChannel, queue: str) -> int | None:
    """Messages ready in ``queue``, or ``None`` if it does not exist (RabbitMQ then closes the channel)."""
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != NOT_FOUND:
            raise
        return None


def without_credentials(url: str) -> str:
    """``url`` minus any ``user:password@``: URLs end up in logs and HTTP answers."""
    parts = urlsplit(url)
    if parts.hostname is None or "@" not in parts.netloc:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
