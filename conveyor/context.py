"""The context a handler receives: enqueue, state, logger, and where the work came from.

A ``def`` handler gets a :class:`Context`, whose state calls return at once; an ``async def``
handler gets an :class:`AsyncContext`, whose state calls are awaited and never block its loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from .declare.steps import Step
from .errors import UndeclaredTopicError
from .logs import StepLogger
from .messaging.publisher import PendingPublish, Publisher
from .store import AsyncStateStore, StateStore


class Enqueued:
    """What ``ctx.enqueue`` returns: the ids of the messages sent (one per subscribing step).

    It may be awaited, so ``await ctx.enqueue(...)`` reads as in Motia; in a worker the
    messages are already confirmed by RabbitMQ when ``enqueue`` returns.
    """

    def __init__(self, future: PendingPublish) -> None:
        self._future = future

    @property
    def message_ids(self) -> list[str]:
        """The ids of the messages (in a worker at once; in an event loop, after ``await``)."""
        return self._future.result()

    def __await__(self) -> Generator[Any, None, list[str]]:
        return (yield from _awaitable(self._future).__await__())


S = TypeVar("S", StateStore, AsyncStateStore)


class _StepContext(Generic[S]):
    """What both kinds of context hold; they differ in their state API (``S``)."""

    def __init__(
        self,
        step: Step,
        *,
        state: S,
        publisher: Publisher,
        trace_id: str,
        message_id: str | None = None,
        attempt: int | None = None,
        topic: str | None = None,
        json_logs: bool = False,
    ) -> None:
        self.step = step
        self.state: S = state
        self.trace_id = trace_id
        self.message_id = message_id
        self.attempt = attempt
        self.topic = topic
        self.logger = StepLogger(step.name, trace_id, json_lines=json_logs, message=message_id)
        self._publisher = publisher
        self._pending: list[PendingPublish] = []

    def enqueue(
        self, topic: str, data: Any, *, delay: float | None = None, priority: int | str | None = None
    ) -> Enqueued:
        """Send ``data`` (a dict or pydantic model) to every step subscribed to ``topic``.

        ``topic`` must be in the step's ``enqueues``. ``delay`` is in seconds (the message runs
        no sooner). ``priority`` (``"low"``, ``"normal"``, ``"high"`` or an integer up to
        ``[broker] max_priority``) overrides the receiving step's default. Called from a
        running event loop (an ``async def`` handler), the publish starts at once and is
        awaited before the handler's work counts as done; elsewhere it returns once
        RabbitMQ has confirmed every copy.
        """
        if topic not in self.step.enqueues:
            raise UndeclaredTopicError(self.step.name, topic, list(self.step.enqueues))
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
        future = self._publisher.enqueue(topic, payload, trace_id=self.trace_id, delay=delay, priority=priority)
        self._pending.append(future)
        return Enqueued(future)

    async def settle(self) -> None:
        """Wait for every enqueue this context started; raise the first failure."""
        for future in self._pending:
            await _awaitable(future)

    def settle_sync(self) -> None:
        """:meth:`settle` for a thread without an event loop."""
        for future in self._pending:
            future.result()  # a worker's enqueues are done by now


class Context(_StepContext[StateStore]):
    """Passed to every ``def`` handler as ``ctx``.

    Attributes:
      state: the :class:`~conveyor.store.StateStore`: ``ctx.state.get("orders", order_id)``.
      logger: a :class:`~conveyor.logs.StepLogger` bound to this step and trace.
      trace_id: follows the work from the HTTP request through every enqueue.
      message_id, attempt, topic: for queue- and cron-triggered steps, the message being
        handled, its attempt number (1 on first delivery) and the topic it came from.

    Parameters:
      step: the step whose handler gets this context.
      state: the state store.
      publisher: what :meth:`enqueue` sends through.
      json_logs: log lines as JSON objects (``[logging] format = "json"``).
    """


class AsyncContext(_StepContext[AsyncStateStore]):
    """Passed to every ``async def`` handler as ``ctx``: as :class:`Context`, with state calls to await.

    ``ctx.state`` is an :class:`~conveyor.store.AsyncStateStore`:
    ``order = await ctx.state.get("orders", order_id)``, and
    ``async with ctx.state.transaction(): ...``. Its calls run off the event loop, so a
    handler waiting for the store (or for a lock another process holds) never stalls the
    other requests the loop serves.
    """


#: Either kind of context (what a runtime hands a handler).
AnyContext = Context | AsyncContext


def _awaitable(future: PendingPublish) -> asyncio.Future[list[str]]:
    return future if isinstance(future, asyncio.Future) else asyncio.wrap_future(future)
