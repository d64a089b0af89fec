"""Timestamps as the seeds write them: ISO 8601, UTC, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """``2026-03-04T10:00:00.000Z``"""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """``moment`` (naive means UTC) as ``2026-03-04T10:00:00.000Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
