"""Claims of cron ticks: the first scheduler to claim ``(step, scheduled time)`` fires it.

Every scheduler fires every tick; the claim (a row in ``cron_fires``, whose primary key is
the step and the tick) is what lets one of them win. See :mod:`conveyor.scheduling.cron`.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transactions import Transaction


def tick_key(tick: datetime) -> str:
    """The tick as the claims store it: ISO 8601 in UTC (``2026-03-04T10:00:31+00:00``)."""
    if tick.tzinfo is None:
        raise ValueError(f"a cron tick needs a timezone, got {tick!r}")
    return tick.astimezone(UTC).isoformat()


class CronFires:
    """The ``cron_fires`` table's calls, shared by both backends (a part of :class:`StateStore`)."""

    if TYPE_CHECKING:  # what StateStore supplies

        def _writing(self) -> AbstractContextManager[Transaction]: ...
        def _reader(self) -> AbstractContextManager[Any]: ...
        def _sql(self, statement: str) -> str: ...

    def claim_cron_fire(self, step: str, tick: datetime, *, fired_by: str) -> bool:
        """Claim ``tick`` of cron step ``step`` for ``fired_by``; ``True`` if nobody had.

        Joins the open transaction, so the claim commits with what the block stages. While
        another transaction holds an uncommitted claim of the same tick, this waits for it:
        if it commits, this returns ``False``; if it rolls back, this wins.
        """
        with self._writing() as tx:
            row = tx.connection.execute(
                self._sql(
                    "INSERT INTO cron_fires (step, tick, fired_by, fired_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (step, tick) DO NOTHING RETURNING 1"
                ),
                (step, tick_key(tick), fired_by, time.time()),
            ).fetchone()
        return row is not None

    def cron_fired_by(self, step: str, tick: datetime) -> str | None:
        """Who claimed ``tick`` of ``step`` (``host:pid``), or ``None`` if nobody did."""
        with self._reader() as db:
            row = db.execute(
                self._sql("SELECT fired_by FROM cron_fires WHERE step = ? AND tick = ?"), (step, tick_key(tick))
            ).fetchone()
        return None if row is None else str(row[0])

    def last_cron_tick(self, step: str) -> datetime | None:
        """The latest tick of ``step`` anyone claimed (within the days the claims are kept)."""
        with self._reader() as db:
            row = db.execute(self._sql("SELECT MAX(tick) FROM cron_fires WHERE step = ?"), (step,)).fetchone()
        return None if row is None or row[0] is None else datetime.fromisoformat(row[0])

    def prune_cron_fires(self, older_than: float) -> int:
        """Forget claims made over ``older_than`` seconds ago; returns how many."""
        with self._writing() as tx:
            cursor = tx.connection.execute(
                self._sql("DELETE FROM cron_fires WHERE fired_at < ?"), (time.time() - older_than,)
            )
            return int(max(cursor.rowcount, 0))
