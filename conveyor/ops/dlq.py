"""Inspect, replay and purge the messages in each step's dead-letter queue (``<Step>.XQ`` on RabbitMQ).

A message that fails for good is rejected, and RabbitMQ moves it, unchanged, to its step's
``.XQ`` queue; the :class:`~conveyor.worker.middleware.DeadLetters` middleware records why it
failed (see :mod:`conveyor.worker.failures`). This module joins the two by message id.

Messages are read with ``basic_get`` on a connection of our own and not acknowledged, so
closing the connection puts them back where they were; only a message that is replayed (once
RabbitMQ has confirmed the new copy) or purged leaves the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import dramatiq
import dramatiq.errors
from dramatiq.common import xq_name
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from ..clock import iso
from ..errors import DeadMessageNotFoundError, PublishError, UnknownStepError
from ..messaging.connections import own_connection, queue_depth, require_rabbitmq
from ..runtime import Runtime
from ..tracing.spans import new_trace_id
from ..worker.failures import FailureRecords
from ..worker.middleware.options import AnyMessage

logger = logging.getLogger("conveyor.dlq")

T = TypeVar("T")

#: Options a replay does not carry over: it runs at attempt 1, due now, under an enqueue span of its own
#: (the tracing middleware gives a message without ``span_id`` one). ``replayed_from_trace`` is what replays
#: carried when they started a new trace.
_RESET_OPTIONS = frozenset(
    {"retries", "eta", "due_at", "span_id", "replay_parent", "replayed_from_message", "replayed_from_trace"}
)


@dataclass(frozen=True)
class DeadMessage:
    """A message in a step's dead-letter queue, with why it failed when that was recorded.

    ``error``, ``traceback`` and ``failed_at`` are ``None`` for a message whose failure was not
    recorded (it died before Conveyor kept records, or its record was lost).
    """

    step: str
    message_id: str
    topic: str | None
    trace_id: str | None
    data: Any
    attempts: int
    error: str | None
    traceback: str | None
    failed_at: str | None
    enqueued_at: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, step: str, message: AnyMessage, record: dict[str, Any] | None, *, failed_at: str | None = None
    ) -> DeadMessage:
        """``message`` with its failure ``record`` (``failed_at`` where the record has no time)."""
        record = record or {}
        options = message.options
        return cls(
            step=step,
            message_id=message.message_id,
            topic=options.get("topic"),
            trace_id=options.get("trace_id"),
            data=message.args[0] if message.args else None,
            attempts=record.get("attempts") or options.get("retries", 0) + 1,
            error=record.get("error"),
            traceback=record.get("traceback"),
            failed_at=record.get("failedAt") or failed_at,
            enqueued_at=iso(datetime.fromtimestamp(message.message_timestamp / 1000, UTC)),
            options=dict(options),
        )

    def to_json(self, *, full: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; ``full=False`` leaves out the data, traceback and options (for listings)."""
        summary: dict[str, Any] = {
            "step": self.step,
            "messageId": self.message_id,
            "topic": self.topic,
            "traceId": self.trace_id,
            "attempts": self.attempts,
            "error": self.error,
            "failedAt": self.failed_at,
        }
        if full:
            summary.update(traceback=self.traceback, enqueuedAt=self.enqueued_at, data=self.data, options=self.options)
        return summary


@dataclass(frozen=True)
class Replay:
    """A dead message sent back to its step as a new message, in the dead message's own trace."""

    step: str
    message_id: str
    new_message_id: str
    trace_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "messageId": self.message_id,
            "newMessageId": self.new_message_id,
            "traceId": self.trace_id,
        }


def replay_options(dead: AnyMessage) -> dict[str, Any]:
    """The options of the replay of ``dead``: its own, in its trace, at attempt 1 again, due now.

    The replay keeps ``trace_id`` (so it shows in the trace of the work that failed) and names
    what it replays: ``replayed_from_message`` is the dead message's id, ``replay_parent`` the id
    of the dead message's enqueue span (its ``span_id`` option, where it has one), under which
    the replay's own enqueue span is drawn.
    """
    options = {key: value for key, value in dead.options.items() if key not in _RESET_OPTIONS}
    options.update(
        retries=0,
        trace_id=dead.options.get("trace_id") or new_trace_id(),  # a message from before trace ids starts one
        replayed_from_message=dead.message_id,
    )
    if span_id := dead.options.get("span_id"):
        options["replay_parent"] = span_id
    return options


@dataclass(frozen=True)
class Purge:
    """What :meth:`DeadLetterQueue.purge` removed."""

    step: str
    messages: int
    records: int

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "purged": self.messages, "records": self.records}


@dataclass(frozen=True)
class StepDeadLetters:
    """A step's dead-letter queue: how many messages it holds, and the first of them."""

    step: str
    count: int
    messages: list[DeadMessage]

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "count": self.count, "messages": [m.to_json(full=False) for m in self.messages]}


@dataclass
class _Fetched:
    tag: int
    message: dramatiq.Message[Any]
    properties: BasicProperties


class DeadLetterQueue:
    """The dead-letter queues of a runtime's steps, on RabbitMQ.

    Every method opens a connection of its own and blocks: call it from a thread when you are
    in an event loop. Raises :class:`~conveyor.errors.UnsupportedBrokerError` on the in-memory
    broker, :class:`~conveyor.errors.UnknownStepError` for a step without a queue.

    Example::

        dlq = DeadLetterQueue(runtime)
        for dead in dlq.listing("ProcessOrder").messages:
            print(dead.message_id, dead.error)
        dlq.replay("ProcessOrder", dead.message_id)   # after fixing what made it fail

    Parameters:
      runtime: the booted runtime.
      records: the failure records; by default those in the runtime's state store.
    """

    def __init__(self, runtime: Runtime, records: FailureRecords | None = None) -> None:
        self.runtime = runtime
        self.broker = require_rabbitmq(runtime.broker, "The dead-letter queue tool")
        self.records = records or runtime.failures

    @property
    def steps(self) -> list[str]:
        """The steps that have queues (queue- and cron-triggered ones), by name."""
        return sorted(self.runtime.actors)

    def counts(self) -> dict[str, int]:
        """Messages in each step's dead-letter queue (0 where RabbitMQ has no such queue yet)."""
        counts: dict[str, int] = {}
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            for step in self.steps:
                depth = queue_depth(channel, self._queue(step))
                if depth is None:
                    channel = connection.channel()  # RabbitMQ closed the old one
                counts[step] = depth or 0
        return counts

    def listing(self, step: str, *, limit: int = 100) -> StepDeadLetters:
        """How many dead messages ``step`` has, and the first ``limit`` of them with their errors.

        Nothing leaves the queue. Messages another client holds at the moment are not seen.
        """
        queue = self._queue(step)
        records = self.records.for_step(step)
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            count = queue_depth(channel, queue) or 0
            messages = [
                self._dead(step, got, records.get(got.message.message_id))
                for got in self._fetch(channel, queue, min(count, limit))
            ]
        return StepDeadLetters(step, count, messages)

    def overview(self, *, limit: int = 100) -> list[StepDeadLetters]:
        """:meth:`listing` for every step that has dead messages."""
        return [self.listing(step, limit=limit) for step, count in self.counts().items() if count]

    def get(self, step: str, message_id: str) -> DeadMessage:
        """One dead message of ``step``; raises :class:`~conveyor.errors.DeadMessageNotFoundError`."""
        return self._with_message(
            step, message_id, lambda channel, got: self._dead(step, got, self.records.get(message_id))
        )

    def replay(self, step: str, message_id: str) -> Replay:
        """Send one dead message back to its step as a new message: attempt 1 again, in the same trace.

        The message leaves the dead-letter queue once RabbitMQ confirmed the new copy (see
        :func:`replay_options` for what the copy carries).
        """
        return self._with_message(step, message_id, lambda channel, got: self._replay(channel, step, got))

    def _with_message(self, step: str, message_id: str, use: Callable[[BlockingChannel, _Fetched], T]) -> T:
        """``use(channel, message)`` for the dead message ``message_id`` while it is held (not acknowledged)."""
        queue = self._queue(step)
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            for got in self._fetch(channel, queue, queue_depth(channel, queue) or 0):
                if got.message.message_id == message_id:
                    return use(channel, got)
        raise DeadMessageNotFoundError(step, message_id)

    def replay_all(self, step: str) -> list[Replay]:
        """Send every message now in ``step``'s dead-letter queue back to it (see :meth:`replay`).

        Messages that die again meanwhile are not replayed twice: only as many as the queue
        held at the start are taken.
        """
        queue = self._queue(step)
        replays: list[Replay] = []
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            try:
                for got in self._fetch(channel, queue, queue_depth(channel, queue) or 0):
                    replays.append(self._replay(channel, step, got))
            except PublishError as exc:
                raise PublishError(f"replayed {len(replays)} message(s) of step {step!r}, then: {exc}") from None
        return replays

    def purge(self, step: str) -> Purge:
        """Delete every message in ``step``'s dead-letter queue and their failure records, for good."""
        queue = self._queue(step)
        with own_connection(self.broker) as connection:
            channel = connection.channel()
            purged = 0 if queue_depth(channel, queue) is None else channel.queue_purge(queue).method.message_count
        removed = self.records.delete_step(step)
        logger.warning("Purged %d dead message(s) and %d failure record(s) of step %s.", purged, removed, step)
        return Purge(step, purged, removed)

    def _queue(self, step: str) -> str:
        actor = self.runtime.actors.get(step)
        if actor is None:
            http_only = step in self.runtime.registry.steps
            raise UnknownStepError(step, list(self.runtime.actors), http_only=http_only)
        return xq_name(actor.queue_name)

    @staticmethod
    def _fetch(channel: BlockingChannel, queue: str, count: int) -> Iterator[_Fetched]:
        """Get up to ``count`` messages without acknowledging them; the channel must still be open."""
        for _ in range(count):
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return
            assert isinstance(method, Basic.GetOk)
            try:
                message = dramatiq.Message[Any].decode(body)
            except dramatiq.errors.DecodeError:
                logger.warning("A message in %s is not a Dramatiq message; left where it is.", queue)
                continue
            yield _Fetched(method.delivery_tag, message, properties)

    def _replay(self, channel: BlockingChannel, step: str, got: _Fetched) -> Replay:
        dead = got.message
        options = replay_options(dead)
        # Built here, not with publisher.send: the replay keeps the dead message's args and every option.
        message = self.runtime.actors[step].message_with_options(args=dead.args, kwargs=dead.kwargs, **options)
        try:
            self.runtime.publisher.resend(message)  # returns once RabbitMQ confirmed it (publisher confirms)
        except PublishError as exc:
            raise PublishError(
                f"RabbitMQ did not take the replay of message {dead.message_id} (step {step!r}): {exc}; "
                "it stays in the dead-letter queue"
            ) from exc
        channel.basic_ack(got.tag)
        self.records.delete(dead.message_id)
        logger.info(
            "Replayed dead message %s of step %s as message %s, in its trace %s.",
            dead.message_id,
            step,
            message.message_id,
            options["trace_id"],
        )
        return Replay(step, dead.message_id, message.message_id, options["trace_id"])

    @staticmethod
    def _dead(step: str, got: _Fetched, record: dict[str, Any] | None) -> DeadMessage:
        return DeadMessage.of(step, got.message, record, failed_at=_death_time(got.properties))


def _death_time(properties: BasicProperties) -> str | None:
    """When RabbitMQ dead-lettered the message, from its ``x-death`` header."""
    deaths = (properties.headers or {}).get("x-death") or []
    when = deaths[0].get("time") if deaths and isinstance(deaths[0], dict) else None
    return iso(when) if isinstance(when, datetime) else None
