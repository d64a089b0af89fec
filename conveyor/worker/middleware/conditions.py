"""Account for messages a step's condition filtered out: acknowledged, logged at debug, counted."""

from __future__ import annotations

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from ...logs import class_logger
from ...store import StateStore

#: The state group holding, per step, how many messages its condition skipped.
SKIPPED_GROUP = "conveyor.skipped"


class ConditionNotMet(SkipMessage):
    """Raised by a step's runner when its trigger's condition is false for a message."""


class Conditions(Middleware):
    """Count and log messages skipped because their step's condition was false.

    The condition itself runs where the input is validated (the step's runner), which raises
    :class:`ConditionNotMet`; Dramatiq then acknowledges the message without retrying or
    dead-lettering it, and calls this middleware's ``after_skip_message``.

    Parameters:
      state: where the per-step skip counts are kept (group ``conveyor.skipped``).
    """

    def __init__(self, state: StateStore) -> None:
        self.logger = class_logger(__name__, type(self))
        self.state = state

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.logger.debug("Message %s skipped: %s's condition is false.", message.message_id, message.actor_name)
        self.state.update(SKIPPED_GROUP, message.actor_name, [{"type": "increment", "path": "count"}])
