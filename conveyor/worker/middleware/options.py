"""Reading per-step settings the way Dramatiq's own middleware does."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

#: A message as middleware hooks get it: the message itself, or the worker's proxy of it.
AnyMessage = dramatiq.Message[Any] | MessageProxy


def option(broker: dramatiq.Broker, message: AnyMessage, name: str, default: Any = None) -> Any:
    """The value of option ``name`` for ``message``: the message's, then its actor's, then ``default``."""
    if name in message.options:
        return message.options[name]
    return broker.get_actor(message.actor_name).options.get(name, default)
