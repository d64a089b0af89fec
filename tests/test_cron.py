from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from conveyor.declare.cron_expressions import parse_cron
from conveyor.errors import ConfigError

START = datetime(2026, 3, 4, 10, 0, 31, tzinfo=UTC)  # a Wednesday


def next_fire(expression: str) -> datetime:
    return parse_cron(expression).get_next_fire_time(None, START)


def test_five_fields_are_minute_hour_day_month_weekday():
    assert next_fire("*/5 * * * *") == datetime(2026, 3, 4, 10, 5, tzinfo=UTC)
    assert next_fire("0 2 * * *") == datetime(2026, 3, 5, 2, 0, tzinfo=UTC)


def test_weekday_numbers_follow_cron_where_zero_is_sunday():
    assert next_fire("0 9 * * 1") == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)  # Monday
    assert next_fire("0 9 * * 0") == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # Sunday
    assert next_fire("0 9 * * 7") == datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # Sunday too
    assert next_fire("0 9 * * 1-5") == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)


def test_six_fields_put_seconds_first():
    assert next_fire("*/10 * * * * *") == datetime(2026, 3, 4, 10, 0, 40, tzinfo=UTC)


def test_seven_fields_add_the_year_last_as_in_the_messages_seed():
    assert next_fire("0 0 2 * * * *") == datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    assert next_fire("0 0 0 1 1 * 2030") == datetime(2030, 1, 1, tzinfo=UTC)


def test_timezone_applies():
    fire = parse_cron("0 2 * * *", timezone="Europe/Paris").get_next_fire_time(None, START)
    assert fire.utcoffset().total_seconds() == 3600
    assert (fire.hour, fire.minute) == (2, 0)


@pytest.mark.parametrize("expression", ["* * *", "61 * * * *", "* * * * 9", "a b c d e"])
def test_invalid_expressions_name_the_step_and_expression(expression):
    with pytest.raises(ConfigError, match=re.escape(f"{expression!r}")) as raised:
        parse_cron(expression, step="Cleanup")
    assert "step 'Cleanup'" in str(raised.value)
