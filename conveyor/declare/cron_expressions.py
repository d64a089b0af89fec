"""Cron expressions as Motia writes them: 5 fields, or 6/7 with seconds first (and year last)."""

from __future__ import annotations

import re

from apscheduler.triggers.cron import CronTrigger

from ..errors import ConfigError

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_cron(expression: str, *, timezone: str = "UTC", step: str = "?") -> CronTrigger:
    """Build an APScheduler trigger from a cron expression.

    ``"*/5 * * * *"`` (minute hour day month weekday), ``"0 */5 * * * *"`` (seconds first) and
    ``"0 0 2 * * * *"`` (seconds first, year last) are accepted. Weekday numbers follow cron
    (0 and 7 are Sunday), not APScheduler (0 is Monday).
    """
    fields = expression.split()
    names = {
        5: ("minute", "hour", "day", "month", "day_of_week"),
        6: ("second", "minute", "hour", "day", "month", "day_of_week"),
        7: ("second", "minute", "hour", "day", "month", "day_of_week", "year"),
    }.get(len(fields))
    if names is None:
        raise ConfigError(
            f"step {step!r}: cron expression {expression!r} has {len(fields)} fields; "
            "use 5 (minute hour day month weekday), 6 (seconds first) or 7 (seconds first, year last)"
        )
    values = dict(zip(names, fields, strict=True))
    if "second" not in values:
        values["second"] = "0"
    try:
        values["day_of_week"] = _cron_weekdays(values["day_of_week"])
        return CronTrigger(timezone=timezone, **values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"step {step!r}: invalid cron expression {expression!r}: {exc}") from None


def _cron_weekdays(field: str) -> str:
    # APScheduler numbers weekdays from Monday; cron from Sunday. Names mean the same to both.
    def name(match: re.Match[str]) -> str:
        number = int(match.group(0))
        if number > 7:
            raise ValueError(f"weekday {number} is out of range 0-7")
        return _DAY_NAMES[number]

    parts = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        parts.append(re.sub(r"\d+", name, base) + slash + step)
    return ",".join(parts)
