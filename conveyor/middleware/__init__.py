"""Conveyor's cross-cutting behaviour, one Dramatiq middleware per behaviour.

Each reads its per-step settings as Dramatiq actor options: the message's own option wins,
then the step's (from config.toml or code), then the middleware's default.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from .dead_letters import DeadLetters
from .retries import Retries

__all__ = ["DeadLetters", "Retries", "option"]


def option(broker: dramatiq.Broker, message: dramatiq.Message, name: str, default: Any = None) -> Any:
    """The value of option ``name`` for ``message``: message, then actor, then ``default``."""
    if name in message.options:
        return message.options[name]
    return broker.get_actor(message.actor_name).options.get(name, default)
