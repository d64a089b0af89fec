"""Triggers: what makes a step run (an HTTP request, a message on a topic, a schedule)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..errors import StepDeclarationError

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

#: A condition is called with the validated input and the step's context.
Condition = Callable[[Any, Any], bool]


@dataclass(frozen=True)
class HttpTrigger:
    """Run the step for an HTTP request on ``method`` and ``path``."""

    method: str
    path: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "http"


@dataclass(frozen=True)
class QueueTrigger:
    """Run the step for every message enqueued to ``topic``."""

    topic: str
    input: type[BaseModel] | None = None
    condition: Condition | None = None

    @property
    def kind(self) -> str:
        return "queue"


@dataclass(frozen=True)
class StateTrigger:
    """Run the step when a value in ``group`` is created, updated or deleted and matches.

    ``filter`` maps dotted paths to the values they must hold (in the new value; in the old
    one for a deletion): every matching write fires. ``becomes`` fires only on a transition:
    the new value holds every pair and the old one (or a missing value) did not.
    ``condition(change, ctx)`` is checked on the worker before the handler.
    """

    group: str
    filter: dict[str, Any] = field(default_factory=dict)
    condition: Condition | None = None
    becomes: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "state"

    def matches(self, value: Any) -> bool:
        """Does ``value`` hold every path/value pair of the filter?"""
        return _holds(value, self.filter)

    def fires(self, old: Any, new: Any) -> bool:
        """Does a change from ``old`` to ``new`` (``None``: missing) trigger the step?"""
        if self.becomes:
            return (
                new is not None
                and _holds(new, self.filter)
                and _holds(new, self.becomes)
                and not (old is not None and _holds(old, self.becomes))
            )
        return _holds(old if new is None else new, self.filter)


def _holds(value: Any, pairs: dict[str, Any]) -> bool:
    for path, expected in pairs.items():
        current = value
        for part in path.split("."):
            if not isinstance(current, dict) or part not in current:
                return False
            current = current[part]
        if current != expected:
            return False
    return True


@dataclass(frozen=True)
class CronTrigger:
    """Run the step on a cron schedule (5, 6 or 7 fields)."""

    expression: str

    @property
    def kind(self) -> str:
        return "cron"


Trigger = HttpTrigger | QueueTrigger | StateTrigger | CronTrigger

#: Motia's ``:name`` segments (not Starlette's ``{name:int}`` converters).
_MOTIA_PARAM = re.compile(r"(?<=/):([A-Za-z_][A-Za-z0-9_]*)")


def http(
    method: str,
    path: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: dict[int, type[BaseModel]] | None = None,
) -> HttpTrigger:
    """Trigger a step with an HTTP request.

    ``path`` accepts Starlette's ``/orders/{orderId}`` and Motia's ``/orders/:orderId``.
    ``body`` and ``query`` are pydantic models the request is validated against; ``responses``
    maps status codes to the models the response bodies are documented (and serialised) with.

    >>> http("GET", "/orders/:orderId").path
    '/orders/{orderId}'
    """
    method = method.upper()
    if method not in HTTP_METHODS:
        raise StepDeclarationError(f"http trigger method {method!r} is not one of {sorted(HTTP_METHODS)}")
    if not path.startswith("/"):
        raise StepDeclarationError(f"http trigger path {path!r} must start with '/'")
    return HttpTrigger(method, _MOTIA_PARAM.sub(r"{\1}", path), body, query, dict(responses or {}))


def queue(topic: str, *, input: type[BaseModel] | None = None, condition: Condition | None = None) -> QueueTrigger:
    """Trigger a step with every message enqueued to ``topic``, validated against ``input``."""
    if not topic:
        raise StepDeclarationError("queue trigger needs a topic name")
    return QueueTrigger(topic, input, condition)


def state(
    group: str,
    *,
    filter: dict[str, Any] | None = None,
    becomes: dict[str, Any] | None = None,
    condition: Condition | None = None,
) -> StateTrigger:
    """Trigger a step when state in ``group`` changes: ``state("messages", filter={"status": "processed"})``.

    ``filter`` fires on every write whose value matches; ``becomes`` only when a value starts
    to match: ``state("accounts", becomes={"status": "active"})`` fires when an account turns
    active, and not on later writes to the active account. The handler's input is a
    :class:`~conveyor.declare.state_changes.StateChange` (``group``, ``key``, ``event``,
    ``old_value``, ``value``). The trigger travels through RabbitMQ like any message.
    """
    if not group:
        raise StepDeclarationError("state trigger needs a group name")
    return StateTrigger(group, dict(filter or {}), condition, dict(becomes or {}))


def cron(expression: str) -> CronTrigger:
    """Trigger a step on a schedule: ``"*/5 * * * *"``, or 6/7 fields with seconds first."""
    return CronTrigger(expression.strip())
