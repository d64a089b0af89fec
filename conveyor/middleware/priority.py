"""Give each message its RabbitMQ priority: the message's own, else its step's, else normal."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ..errors import ConveyorError
from .options import option

#: Named priorities, as fractions of ``max_priority`` (with 10: low 1, normal 5, high 10).
PRIORITY_NAMES = {"low": 0.1, "normal": 0.5, "high": 1.0}


class Priority(Middleware):
    """Set ``broker_priority`` (RabbitMQ's message priority) before each enqueue.

    ``priority`` is read from the message's options (``ctx.enqueue(..., priority="high")``),
    then the step's (``priority`` in config.toml or code), then ``"normal"``. It is a name
    (``low``, ``normal``, ``high``) or an integer from 0 to ``max_priority``; higher runs first.
    Queues must be declared with ``x-max-priority`` for RabbitMQ to honour it.

    Parameters:
      max_priority(int): The queues' ``x-max-priority``.
    """

    actor_options = {"priority"}

    def __init__(self, *, max_priority: int = 10) -> None:
        self.max_priority = max_priority

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if "broker_priority" in message.options:
            return  # already resolved: a retry or a delayed message coming back
        value = option(broker, message, "priority", "normal")
        message.options["broker_priority"] = resolve_priority(value, self.max_priority)


def resolve_priority(value: Any, max_priority: int) -> int:
    """``"high"`` -> ``max_priority``; an int is checked against ``0..max_priority``.

    >>> resolve_priority("normal", 10), resolve_priority(3, 10)
    (5, 3)
    """
    if isinstance(value, str):
        if value not in PRIORITY_NAMES:
            raise ConveyorError(f"priority {value!r} is not one of low, normal, high (or an integer)")
        return max(0, round(PRIORITY_NAMES[value] * max_priority))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max_priority:
        raise ConveyorError(f"priority {value!r} must be low, normal, high or an integer from 0 to {max_priority}")
    return value
