"""What a state-triggered step receives: one change to one value."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class StateChange(BaseModel):
    """A value in ``group`` at ``key`` was created, updated or deleted.

    ``old_value`` is ``None`` for ``created``; ``value`` is ``None`` for ``deleted``.
    """

    group: str
    key: str
    event: Literal["created", "updated", "deleted"]
    old_value: Any = None
    value: Any = None
