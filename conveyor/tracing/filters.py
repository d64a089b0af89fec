"""Query strings to :class:`TraceQuery` and :class:`LogQuery`: the filters of the traces and logs
pages and of their JSON API, checked here so a bad value is a 400 naming its field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from .queries import MAX_PAGE, MAX_PER_PAGE, TRACE_STATUSES, LogQuery, TraceQuery

LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_RELATIVE = re.compile(r"^(\d{1,9})\s*(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Longest accepted free-text filter (ids, step names, substrings).
MAX_TEXT = 500


class BadFilter(ValueError):
    """A query-string value that means nothing; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def moment(field: str, value: str, *, now: float | None = None) -> float:
    """An ISO datetime (UTC unless it says otherwise) or a time ago (``15m``, ``2h``, ``7d``), as epoch seconds."""
    value = value.strip()
    if match := _RELATIVE.match(value):
        return (time.time() if now is None else now) - int(match[1]) * _UNIT[match[2]]
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise BadFilter(
            field,
            f"{field} must be an ISO datetime (2026-01-02T03:04:05) or a time ago such as 15m, 2h, 7d; got {value!r}",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _whole(field: str, value: str, low: int, high: int) -> int:
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise BadFilter(field, f"{field} must be a whole number from {low} to {high}; got {value[:40]!r}")
    return int(value)


def _text(params: Mapping[str, str], field: str) -> str | None:
    value = params.get(field, "").strip()
    if len(value) > MAX_TEXT:
        raise BadFilter(field, f"{field} is longer than {MAX_TEXT} characters")
    return value or None


def _times(params: Mapping[str, str]) -> tuple[float | None, float | None]:
    since = moment("since", params["since"]) if params.get("since", "").strip() else None
    until = moment("until", params["until"]) if params.get("until", "").strip() else None
    if since is not None and until is not None and since > until:
        raise BadFilter("until", "until is before since; swap them or clear one")
    return since, until


def _paging(params: Mapping[str, str], default_per_page: int) -> tuple[int, int]:
    page = _whole("page", params["page"], 1, MAX_PAGE) if params.get("page", "").strip() else 1
    per_page = (
        _whole("per_page", params["per_page"], 1, MAX_PER_PAGE)
        if params.get("per_page", "").strip()
        else default_per_page
    )
    return page, per_page


def trace_query(params: Mapping[str, str]) -> TraceQuery:
    """The traces filter of a query string.

    Fields: ``status flow step since until min_duration trace_id message_id text page per_page``.
    """
    status = _text(params, "status")
    if status is not None and status not in TRACE_STATUSES:
        raise BadFilter("status", f"status must be one of {', '.join(TRACE_STATUSES)}; got {status!r}")
    minimum = params.get("min_duration", "").strip()
    try:
        min_duration = float(minimum) if minimum else None
    except ValueError:
        min_duration = -1.0
    if min_duration is not None and not 0 <= min_duration < 10**9:
        raise BadFilter(
            "min_duration", f"min_duration must be a number of milliseconds, 0 or more; got {minimum[:40]!r}"
        )
    since, until = _times(params)
    page, per_page = _paging(params, 50)
    return TraceQuery(
        status=status,
        flow=_text(params, "flow"),
        step=_text(params, "step"),
        since=since,
        until=until,
        min_duration_ms=min_duration,
        trace_id=_text(params, "trace_id"),
        message_id=_text(params, "message_id"),
        text=_text(params, "text"),
        page=page,
        per_page=per_page,
    )


def log_query(params: Mapping[str, str]) -> LogQuery:
    """The logs filter of a query string: ``level step trace_id text since until page per_page``."""
    level = _text(params, "level")
    if level is not None:
        level = level.upper()
        if level not in LEVELS:
            raise BadFilter("level", f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    since, until = _times(params)
    page, per_page = _paging(params, 100)
    return LogQuery(
        level=level,
        step=_text(params, "step"),
        trace_id=_text(params, "trace_id"),
        text=_text(params, "text"),
        since=since,
        until=until,
        page=page,
        per_page=per_page,
    )
