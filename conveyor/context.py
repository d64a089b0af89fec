"""The context a handler receives: enqueue, state, logger, and where the work came from."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .errors import UndeclaredTopicError
from .logs import StepLogger
from .state_store import StateStore

if TYPE_CHECKING:
    from .runtime import Runtime
    from .steps import Step


class Enqueued:
    """What ``ctx.enqueue`` returns: the ids of the messages sent (one per subscribing step).

    It may be awaited, so ``await ctx.enqueue(...)`` reads as in Motia; in a worker the
    messages are already confirmed by RabbitMQ when ``enqueue`` returns.
    """

    def __init__(self, future: concurrent.futures.Future[list[str]] | asyncio.Future[list[str]]) -> None:
        self._future = future

    @property
    def message_ids(self) -> list[str]:
        """The ids of the messages (in a worker at once; in an event loop, after ``await``)."""
        return self._future.result()

    def __await__(self) -> Generator[Any, None, list[str]]:
        return (yield from _awaitable(self._future).__await__())


class Context:
    """Passed to every handler as ``ctx``.

    Attributes:
      state: the :class:`~conveyor.state_store.StateStore`.
      logger: a :class:`~conveyor.logs.StepLogger` bound to this step and trace.
      trace_id: follows the work from the HTTP request through every enqueue.
      message_id, attempt, topic: for queue- and cron-triggered steps, the message being
        handled, its attempt number (1 on first delivery) and the topic it came from.
    """

    def __init__(
        self,
        runtime: Runtime,
        step: Step,
        *,
        trace_id: str,
        message_id: str | None = None,
        attempt: int | None = None,
        topic: str | None = None,
    ) -> None:
        self._runtime = runtime
        self.step = step
        self.trace_id = trace_id
        self.message_id = message_id
        self.attempt = attempt
        self.topic = topic
        self.logger = StepLogger(
            step.name, trace_id, json_lines=runtime.config.logging.format == "json", message=message_id
        )
        self._pending: list[concurrent.futures.Future[list[str]] | asyncio.Future[list[str]]] = []

    @property
    def state(self) -> StateStore:
        return self._runtime.state

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
        options: dict[str, Any] = {"trace_id": self.trace_id, "delay": delay, "priority": priority}
        runtime = self._runtime
        future: concurrent.futures.Future[list[str]] | asyncio.Future[list[str]]
        if runtime.async_publisher is not None and on_event_loop():
            future = asyncio.ensure_future(runtime.publish_async(topic, payload, **options))
        elif runtime.async_publisher is not None and runtime.async_loop is not None:
            # A def handler in the gateway's thread pool: hand the publish to the loop's pipelined
            # publisher and wait here, off the loop, for the confirm.
            future = asyncio.run_coroutine_threadsafe(
                runtime.publish_async(topic, payload, **options), runtime.async_loop
            )
            future.result()
        elif on_event_loop():
            future = runtime.publisher_pool.submit(runtime.publish, topic, payload, **options)
        else:
            future = concurrent.futures.Future()
            future.set_result(runtime.publish(topic, payload, **options))
        self._pending.append(future)
        return Enqueued(future)

    async def settle(self) -> None:
        """Wait for every enqueue this context started; raise the first failure."""
        for future in self._pending:
            await _awaitable(future)

    def settle_sync(self) -> None:
        for future in self._pending:
            future.result()  # a worker's enqueues are done by now


def on_event_loop() -> bool:
    """Is this thread running an asyncio event loop right now?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _awaitable(future: concurrent.futures.Future[list[str]] | asyncio.Future[list[str]]) -> asyncio.Future[list[str]]:
    return future if isinstance(future, asyncio.Future) else asyncio.wrap_future(future)
