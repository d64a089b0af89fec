"""Send messages that failed for good to their step's dead-letter topic, where another step can handle them."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.logging import get_logger
from dramatiq.middleware import Middleware

from ..clock import now_iso

#: ``publish(topic, record, trace_id)``: how the record reaches the topic's subscribers.
Publish = Callable[[str, dict[str, Any], str | None], Any]


class DeadLetters(Middleware):
    """When a message fails for good, publish a dead-letter record to ``dead_letter_queue``.

    The record holds the original data's fields at the top level (so a handler's schema can
    read ``orderId`` directly), plus ``error`` and ``failedAt``, and a ``deadLetter`` object
    with the step, topic, message id, attempt count, last traceback line and the original
    data. Dramatiq's ``.XQ`` queue keeps the failed message too.

    Must be listed before :class:`~conveyor.middleware.Retries`, which decides when a message
    fails: Dramatiq calls ``after_*`` hooks in reverse order, so Retries runs first.

    Parameters:
      publish: called with ``(topic, record, trace_id)``.
    """

    actor_options = {"dead_letter_queue"}

    def __init__(self, publish: Publish) -> None:
        self.logger = get_logger(__name__, type(self))
        self.publish = publish

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.Message, *, result: Any = None, exception: Any = None
    ) -> None:
        if exception is None or not message.failed:
            return
        actor = broker.get_actor(message.actor_name)
        topic = message.options.get("dead_letter_queue", actor.options.get("dead_letter_queue"))
        if not topic:
            return
        record = dead_letter_record(message, exception, step=actor.actor_name)
        self.publish(topic, record, message.options.get("trace_id"))
        self.logger.warning("Message %s dead-lettered to topic %r: %s", message.message_id, topic, record["error"])


def dead_letter_record(message: dramatiq.Message, exception: BaseException, *, step: str) -> dict[str, Any]:
    data = message.args[0] if message.args else None
    error = f"{type(exception).__name__}: {exception}"
    lines = traceback.format_exception(exception)
    record: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    record.update(
        error=error,
        failedAt=now_iso(),
        deadLetter={
            "step": step,
            "topic": message.options.get("topic"),
            "messageId": message.message_id,
            "attempts": message.options.get("retries", 0) + 1,
            "traceback": lines[-1].strip() if lines else error,
            "data": data,
        },
    )
    return record
