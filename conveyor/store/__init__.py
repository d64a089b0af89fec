"""The state store: JSON values by group and key, shared by every process, with atomic updates.

:class:`StateStore` keeps them in SQLite; :mod:`.ops` holds Motia's update operations and
:mod:`.outbox` publishes the state triggers each write records.
"""

from __future__ import annotations

from .sqlite import PendingTrigger, StateStore

__all__ = ["PendingTrigger", "StateStore"]
