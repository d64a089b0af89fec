"""Reading per-step settings the way Dramatiq's own middleware does."""

from __future__ import annotations

from typing import Any

import dramatiq


def option(broker: dramatiq.Broker, message: dramatiq.Message, name: str, default: Any = None) -> Any:
    """The value of option ``name`` for ``message``: the message's, then its actor's, then ``default``."""
    if name in message.options:
        return message.options[name]
    return broker.get_actor(message.actor_name).options.get(name, default)
