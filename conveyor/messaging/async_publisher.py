"""Publish to RabbitMQ from an asyncio event loop with many confirms in flight on one channel.

The gateway answers a request only once RabbitMQ has confirmed its messages. Waiting for
each confirm in a thread (one round trip per request, one channel per thread) caps it at a
few hundred requests a second; here every request publishes at once on a shared channel and
awaits its own confirm, so confirms for many requests travel together.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import pika
import pika.connection
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.frame import Method

from ..errors import PublishError
from .connections import describe_nodes
from .delays import DeclaredQueues

logger = logging.getLogger("conveyor.publisher")


class PublishInterrupted(PublishError):
    """The publish may go through if tried again: RabbitMQ could not be reached, the connection or
    channel was lost before the confirm, or a nack (a quorum queue between two leaders)."""


class AsyncPublisher:
    """One connection and one confirm-mode channel, opened on first use and after a loss.

    Parameters:
      parameters: pika connection parameters (the broker's): one node's, or a list of every
        node's, tried in turn when connecting; after a loss the next node is tried first.
      confirm_timeout: seconds to wait for RabbitMQ's confirm before giving up on a message.
    """

    def __init__(
        self,
        parameters: pika.connection.Parameters | Sequence[pika.connection.Parameters],
        *,
        confirm_timeout: float = 10.0,
    ) -> None:
        self.nodes = [parameters] if isinstance(parameters, pika.connection.Parameters) else list(parameters)
        if not self.nodes:
            raise ValueError("AsyncPublisher needs the connection parameters of at least one node")
        #: The node the next connection tries first.
        self._node = 0
        self.confirm_timeout = confirm_timeout
        self.declared = DeclaredQueues()
        self._channel: Channel | None = None
        self._connection: AsyncioConnection | None = None
        self._opening: asyncio.Future[Channel] | None = None
        #: delivery tag -> (its confirm, its message id), in publishing order.
        self._pending: dict[int, tuple[asyncio.Future[None], str]] = {}
        self._returned: set[str] = set()
        self._tags = itertools.count(1)

    async def publish(
        self, routing_key: str, body: bytes, *, message_id: str | None = None, priority: int | None = None
    ) -> None:
        """Publish persistently to ``routing_key`` and return once RabbitMQ confirmed it.

        ``message_id`` (unique; a new one by default) tells a returned message from the others.
        Raises :class:`~conveyor.errors.PublishError` if RabbitMQ refuses it (no such queue,
        a nack), the connection is lost first, or no confirm comes in ``confirm_timeout``.
        """
        channel = await self._ready_channel()
        message_id = message_id or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        confirmed: asyncio.Future[None] = loop.create_future()
        tag = next(self._tags)
        self._pending[tag] = (confirmed, message_id)
        confirmed.add_done_callback(lambda _: self._pending.pop(tag, None))
        channel.basic_publish(
            exchange="",
            routing_key=routing_key,
            body=body,
            properties=pika.BasicProperties(delivery_mode=2, priority=priority, message_id=message_id),
            mandatory=True,  # an unroutable message comes back instead of vanishing
        )
        # A timer, not asyncio.wait_for: no extra task per message on the hot path.
        expiry = loop.call_later(self.confirm_timeout, _expire, confirmed, self.confirm_timeout)
        try:
            await confirmed
        except PublishError as exc:
            raise type(exc)(f"{exc} (queue {routing_key!r})") from None
        finally:
            expiry.cancel()

    async def declare(self, queue: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue (used for delay queues) unless declared recently."""
        if not self.declared.stale(queue):
            return
        channel = await self._ready_channel()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel.queue_declare(queue, durable=True, arguments=arguments, callback=lambda _: _settle(done))
        await asyncio.wait_for(done, self.confirm_timeout)
        self.declared.declared(queue)

    async def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    async def _ready_channel(self) -> Channel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._opening is None or self._opening.done():
            self._opening = asyncio.get_running_loop().create_future()
            self._connect(self._opening)
        try:
            return await asyncio.wait_for(asyncio.shield(self._opening), self.confirm_timeout)
        except (TimeoutError, pika.exceptions.AMQPError, OSError) as exc:
            self._opening = None
            raise PublishInterrupted(f"cannot reach RabbitMQ: {exc!r}") from None

    def _connect(self, opened: asyncio.Future[Channel], failures: tuple[str, ...] = ()) -> None:
        """Open a connection to the current node; if it cannot be opened, to the next, once round the list."""

        def on_channel(channel: Channel) -> None:
            self._channel = channel
            self._tags = itertools.count(1)
            channel.add_on_close_callback(self._on_channel_closed)
            channel.add_on_return_callback(self._on_return)
            channel.confirm_delivery(self._on_confirm, callback=lambda _: _settle(opened, channel))

        def on_open(connection: AsyncioConnection) -> None:
            connection.channel(on_open_callback=on_channel)

        def on_open_error(connection: AsyncioConnection, error: BaseException) -> None:
            tried = (*failures, f"{describe_nodes([node])}: {error!r}")
            self._node = (self._node + 1) % len(self.nodes)
            if opened.done():
                return
            if len(tried) < len(self.nodes):
                self._connect(opened, tried)
            else:
                opened.set_exception(PublishInterrupted(f"cannot connect to RabbitMQ at any node: {'; '.join(tried)}"))

        def on_closed(connection: AsyncioConnection, reason: BaseException) -> None:
            self._fail_pending(f"connection to RabbitMQ lost: {reason!r}")
            self._channel = None
            self.declared.forget()
            if opened.done():  # it was open: reconnect to another node first, this one may be gone
                self._node = (self._node + 1) % len(self.nodes)

        node = self.nodes[self._node]
        self._connection = AsyncioConnection(
            node,
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_closed,
            custom_ioloop=asyncio.get_running_loop(),
        )

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        tags = [method.delivery_tag]
        if method.multiple:
            tags = list(itertools.takewhile(lambda t: t <= method.delivery_tag, self._pending))
        refused = isinstance(method, pika.spec.Basic.Nack)
        for tag in tags:
            future, message_id = self._pending.get(tag, (None, ""))
            if future is None or future.done():
                continue
            if refused:
                future.set_exception(PublishInterrupted("RabbitMQ refused the message (nack)"))
            elif message_id in self._returned:
                self._returned.discard(message_id)
                future.set_exception(PublishError("RabbitMQ could not route the message: the queue does not exist"))
            else:
                future.set_result(None)

    def _on_return(self, channel: Channel, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        # RabbitMQ sends basic.return before the ack of the same message: remember it for then.
        self._returned.add(properties.message_id)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        logger.warning("Publishing channel closed: %r", reason)
        self._channel = None
        self._fail_pending(f"publishing channel closed: {reason!r}")
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _fail_pending(self, reason: str) -> None:
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(PublishInterrupted(reason))
        self._pending.clear()
        self._returned.clear()


def _expire(future: asyncio.Future[None], timeout: float) -> None:
    if not future.done():
        future.set_exception(PublishError(f"RabbitMQ did not confirm the message within {timeout}s"))


def _settle(future: asyncio.Future[Any], value: Any = None) -> None:
    if not future.done():
        future.set_result(value)
