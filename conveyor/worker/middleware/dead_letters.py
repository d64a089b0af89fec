"""Record why messages failed for good, and send them to their step's dead-letter topic if it has one."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name, xq_name
from dramatiq.middleware import Middleware

from ...clock import now_iso
from ...logs import class_logger, error_text
from ..failures import FailureRecords
from .options import AnyMessage, option

#: ``publish(topic, record, trace_id)``: how the record reaches the topic's subscribers.
Publish = Callable[[str, dict[str, Any], str | None], Any]


class DeadLetters(Middleware):
    """When a message fails for good, record why, then publish a dead-letter record to ``dead_letter_queue``.

    Every dead message gets a failure record in the state store (see
    :mod:`conveyor.worker.failures`), whether or not its step has a ``dead_letter_queue``
    topic: Dramatiq's ``.XQ`` queue keeps the message, the record keeps the error, and
    ``python -m actors dlq`` shows them together.

    The record published to the topic holds the original data's fields at the top level (so
    a handler's schema can read ``orderId`` directly), plus ``error`` and ``failedAt``, and a
    ``deadLetter`` object with the step, topic, message id, attempt count, last traceback line
    and the original data.

    Must be listed before :class:`~conveyor.worker.middleware.Retries`, which decides when a message
    fails: Dramatiq calls ``after_*`` hooks in reverse order, so Retries runs first.

    Parameters:
      publish: called with ``(topic, record, trace_id)``.
      records: where failure records go (the runtime's state store).
    """

    actor_options = {"dead_letter_queue"}

    def __init__(self, publish: Publish, records: FailureRecords) -> None:
        self.logger = class_logger(__name__, type(self))
        self.publish = publish
        self.records = records

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or not message.failed:
            return
        actor = broker.get_actor(message.actor_name)
        failure = failure_record(message, exception, step=actor.actor_name)
        # Kept before publishing, so a dead-letter topic that RabbitMQ refuses does not lose it.
        self._keep(failure)
        topic = option(broker, message, "dead_letter_queue")
        if topic:
            record = dead_letter_record(message, exception, step=actor.actor_name, failure=failure)
            self.publish(topic, record, message.options.get("trace_id"))
        # The one line about a dead message (Retries says nothing when it gives up): why, and where it is.
        self.logger.warning(
            "%s[%s] failed for good after %d attempt(s): %s; kept in %s%s",
            message.actor_name,
            message.message_id,
            failure["attempts"],
            error_text(exception),
            xq_name(q_name(message.queue_name)),
            f", its record sent to topic {topic!r}" if topic else "",
        )

    def _keep(self, failure: dict[str, Any]) -> None:
        try:
            self.records.save(failure)
        except Exception:
            # The dead-letter topic still gets its record; only `dlq list` loses the error text.
            self.logger.exception("Could not record why message %s failed.", failure["messageId"])


def failure_record(message: AnyMessage, exception: BaseException, *, step: str) -> dict[str, Any]:
    """What :class:`~conveyor.worker.failures.FailureRecords` keeps about a dead message."""
    error = f"{type(exception).__name__}: {exception}"
    lines = traceback.format_exception(exception)
    return {
        "messageId": message.message_id,
        "step": step,
        "topic": message.options.get("topic"),
        "traceId": message.options.get("trace_id"),
        "error": error,
        "traceback": lines[-1].strip() if lines else error,
        "attempts": message.options.get("retries", 0) + 1,
        "failedAt": now_iso(),
    }


def dead_letter_record(
    message: AnyMessage, exception: BaseException, *, step: str, failure: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record published to a step's dead-letter topic."""
    failure = failure or failure_record(message, exception, step=step)
    data = message.args[0] if message.args else None
    record: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    record.update(
        error=failure["error"],
        failedAt=failure["failedAt"],
        deadLetter={
            "step": step,
            "topic": failure["topic"],
            "messageId": message.message_id,
            "attempts": failure["attempts"],
            "traceback": failure["traceback"],
            "data": data,
        },
    )
    return record
