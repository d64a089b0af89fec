"""Message priorities: the names a step uses, and the RabbitMQ priority each becomes."""

from __future__ import annotations

from typing import Any

from ..errors import ConveyorError

#: Named priorities, as fractions of ``max_priority`` (with 10: low 1, normal 5, high 10).
PRIORITY_NAMES = {"low": 0.1, "normal": 0.5, "high": 1.0}


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
    return int(value)
