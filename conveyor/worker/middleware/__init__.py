"""Conveyor's cross-cutting behaviour, one Dramatiq middleware per behaviour.

Each reads its per-step settings as Dramatiq actor options: the message's own option wins,
then the step's (from config.toml or code), then the middleware's default.
"""

from __future__ import annotations

from .conditions import ConditionNotMet, Conditions
from .dead_letters import DeadLetters
from .options import option
from .priority import Priority
from .retries import Retries

__all__ = ["ConditionNotMet", "Conditions", "DeadLetters", "Priority", "Retries", "option"]
