"""Sending messages: to every step subscribed to a topic, or straight to one step.

:class:`Publisher` is all a :class:`~conveyor.context.Context` needs. :class:`MessagePublisher`
is the runtime's, and the one place that decides how a publish travels:

- in a worker thread, or any thread without an event loop: through the Dramatiq broker, which
  returns once RabbitMQ confirmed the message;
- on an event loop that has an :class:`~conveyor.messaging.async_publisher.AsyncPublisher`
  attached (the gateway's): on that loop, confirms awaited, many in flight on one channel;
- in a thread of that process without a loop (a ``def`` handler in the gateway's thread pool):
  handed to the attached loop, and waited for here;
- on any other event loop (an ``async def`` handler on a worker): in a thread of a small pool,
  so the loop never blocks on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import dramatiq
import dramatiq.errors

from ..errors import ConfigError, PublishError
from ..tracing.spans import new_message_id, new_trace_id
from ..tracing.tracer import Tracer, in_current_span
from .async_publisher import AsyncPublisher, PublishInterrupted
from .broker import ConveyorRabbitmqBroker, enqueue_pauses
from .delays import delay_queue
from .priorities import resolve_priority

logger = logging.getLogger("conveyor.publisher")

#: A publish under way: its result is the ids of the messages sent.
PendingPublish = concurrent.futures.Future[list[str]] | asyncio.Future[list[str]]

T = TypeVar("T")


class Publisher(Protocol):
    """What a handler's context needs to enqueue: start a publish, get its pending result."""

    def enqueue(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> PendingPublish:
        """Start sending ``data`` to every step subscribed to ``topic``."""
        ...


def on_event_loop() -> bool:
    """Is this thread running an asyncio event loop right now?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class MessagePublisher:
    """Builds Dramatiq messages for topics and steps and sends them through the broker.

    Parameters:
      broker: the runtime's broker (its middleware sees every message, as in ``enqueue``).
      actors: the actor of every worker step, by step name.
      subscribers: topic -> the names of the steps subscribed to it.
      max_priority: ``[broker] max_priority``, for checking priorities early.
      threads: size of the pool that does blocking publishes for event loops.
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        actors: Mapping[str, dramatiq.Actor[..., Any]],
        subscribers: Mapping[str, list[str]],
        *,
        max_priority: int,
        threads: int = 8,
    ) -> None:
        self.broker = broker
        self.actors = actors
        self.subscribers = subscribers
        self.max_priority = max_priority
        #: Threads that do blocking RabbitMQ work for event loops, each reusing its own channel
        #: (they start when first used).
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="conveyor-publish")
        #: Traces the messages staged rather than sent (the runtime sets it to its own).
        self.tracer = Tracer(None, {})
        self._async: AsyncPublisher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the paths a publish takes -------------------------------------------------------------

    def enqueue(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> PendingPublish:
        """Start publishing to ``topic`` the way this thread should (see the module's docstring)."""
        options: dict[str, Any] = {"trace_id": trace_id, "delay": delay, "priority": priority}
        if self._async is not None and self._loop is not None:
            if on_event_loop():
                return asyncio.ensure_future(self.publish_async(topic, data, **options))
            # Handed to the loop's pipelined publisher; this thread waits for the confirm, off the loop.
            future = asyncio.run_coroutine_threadsafe(self.publish_async(topic, data, **options), self._loop)
            future.result()
            return future
        if on_event_loop():
            # In the handler's span: the pool's thread would not know what enqueued otherwise.
            return self.pool.submit(in_current_span(self.publish), topic, data, **options)
        done: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
        done.set_result(self.publish(topic, data, **options))
        return done

    def attach(self, publisher: AsyncPublisher, loop: asyncio.AbstractEventLoop) -> None:
        """Publish through ``publisher`` on ``loop`` from now on (the gateway, while it serves)."""
        self._async, self._loop = publisher, loop

    def detach(self) -> AsyncPublisher | None:
        """Stop using the attached publisher; returns it, for the caller to close."""
        publisher, self._async, self._loop = self._async, None, None
        return publisher

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Run blocking broker work (a health check, an operator tool) in :attr:`pool`."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, work)

    def close(self) -> None:
        """Let the pool's threads go once they are idle."""
        self.pool.shutdown(wait=False)

    # -- blocking ------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str | None = None,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> list[str]:
        """Send ``data`` to every step subscribed to ``topic``; returns the message ids.

        Returns once RabbitMQ confirmed every copy. ``delay`` is in seconds; ``priority`` is
        ``"low"``, ``"normal"``, ``"high"`` or an integer up to ``[broker] max_priority``.
        """
        delay_ms = _milliseconds(delay)
        return [self._send(message, delay_ms) for message in self.messages(topic, data, trace_id, priority)]

    def send(
        self,
        step_name: str,
        data: Any = None,
        *,
        topic: str | None = None,
        trace_id: str | None = None,
        delay: float | None = None,
        **options: Any,
    ) -> str:
        """Send one message straight to a step's actor (cron firings, state triggers); returns its id.

        Extra ``options`` become Dramatiq message options (``priority=``, ``state_group=``...).
        """
        message = self.message(step_name, data, topic=topic, trace_id=trace_id, **options)
        return self._send(message, _milliseconds(delay))

    def resend(self, message: dramatiq.Message[Any], delay_ms: int | None = None) -> str:
        """Send a message built elsewhere (a replay keeps every option of the dead one, the
        outbox publishes a staged one), ``delay_ms`` milliseconds from now; returns its id."""
        return self._send(message, delay_ms)

    def _send(self, message: dramatiq.Message[Any], delay_ms: int | None) -> str:
        try:
            return self.broker.enqueue(message, delay=delay_ms or None).message_id
        except dramatiq.errors.BrokerConnectionError as exc:
            raise PublishError(
                f"RabbitMQ did not take the message for step {message.actor_name!r} "
                f"(topic {message.options.get('topic')!r}): {exc}"
            ) from exc

    # -- on the attached event loop ------------------------------------------------------------

    async def publish_async(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str | None = None,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> list[str]:
        """:meth:`publish` on the attached loop: confirms are awaited, not waited for, so many
        publishes share the channel's round trips."""
        messages = self.messages(topic, data, trace_id, priority)
        delay_ms = _milliseconds(delay)
        if len(messages) == 1:
            await self._send_async(messages[0], delay_ms)  # the usual case: no gather, no extra task
        else:
            await asyncio.gather(*(self._send_async(message, delay_ms) for message in messages))
        return [message.message_id for message in messages]

    async def _send_async(self, message: dramatiq.Message[Any], delay_ms: int | None) -> None:
        publisher = self._async
        if publisher is None:
            raise PublishError("the gateway's publisher is closed; it is shutting down")
        self.broker.emit_before("enqueue", message, delay_ms)  # middleware (priority) sees it as in enqueue()
        routing_key = message.queue_name
        if delay_ms:
            # The broker's own arguments for it (a quorum delay queue differs from a classic one).
            name_for = self.broker.delay_queue if isinstance(self.broker, ConveyorRabbitmqBroker) else delay_queue
            routing_key, arguments = name_for(message.queue_name, delay_ms)
        body = message.encode()
        # As the broker's own enqueue: a lost node or a leader election is waited out, a few
        # seconds at most, before the request is answered 503.
        for pause in [*enqueue_pauses(), None]:
            try:
                if delay_ms:
                    await publisher.declare(routing_key, arguments)
                await publisher.publish(
                    routing_key, body, message_id=message.message_id, priority=message.options.get("broker_priority")
                )
                break
            except PublishInterrupted as exc:
                if pause is None:
                    raise
                logger.warning("Publish to %r interrupted (%s); trying again in %.2fs", routing_key, exc, pause)
                await asyncio.sleep(pause)
        self.broker.emit_after("enqueue", message, delay_ms)

    # -- building messages ---------------------------------------------------------------------

    def message(
        self, step_name: str, data: Any, *, topic: str | None = None, trace_id: str | None = None, **options: Any
    ) -> dramatiq.Message[Any]:
        """A message for ``step_name``'s actor, in trace ``trace_id`` (a new one by default)."""
        if "priority" in options:
            resolve_priority(options["priority"], self.max_priority)  # fail here, not in a hook
        try:
            actor = self.actors[step_name]
        except KeyError:
            raise ConfigError(f"step {step_name!r} has no queue; steps with queues: {sorted(self.actors)}") from None
        # Built here rather than by the actor, for an id that sorts by time (see new_message_id).
        return dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=(data,),
            kwargs={},
            options={"topic": topic, "trace_id": trace_id or new_trace_id(), **options},
            message_id=new_message_id(),
        )

    def messages(
        self, topic: str, data: Any, trace_id: str | None, priority: int | str | None
    ) -> list[dramatiq.Message[Any]]:
        """One message per step subscribed to ``topic``, sharing one trace."""
        steps = self.subscribers.get(topic)
        if not steps:
            raise ConfigError(f"topic {topic!r} has no subscribing step")
        trace_id = trace_id or new_trace_id()
        options = {} if priority is None else {"priority": priority}
        return [self.message(step, data, topic=topic, trace_id=trace_id, **options) for step in steps]


def _milliseconds(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None
