"""Give each message its RabbitMQ priority: the message's own, else its step's, else normal."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ...messaging.priorities import resolve_priority
from .options import option


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

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        if "broker_priority" in message.options:
            return  # already resolved: a retry or a delayed message coming back
        value = option(broker, message, "priority", "normal")
        message.options["broker_priority"] = resolve_priority(value, self.max_priority)
