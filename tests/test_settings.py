"""Step settings: one typed model for config.toml, @step keywords, actor options and middleware defaults."""

from __future__ import annotations

import pytest

from conveyor import Registry
from conveyor.settings import BUILTIN, StepSettings, actor_option_names, validate_settings
from conveyor.worker.middleware import Retries
from tests.helpers import memory_runtime


def test_every_setting_that_travels_as_an_actor_option_is_read_by_a_middleware(tmp_path):
    runtime = memory_runtime(tmp_path, Registry())
    assert actor_option_names() <= runtime.broker.actor_options
    assert actor_option_names() == set(StepSettings.model_fields) - {"cron", "concurrency"}


def test_layers_take_only_the_fields_they_name():
    code = StepSettings(max_retries=9)
    section = StepSettings.model_validate({"retry_delay": 5})
    settings = BUILTIN.merged(code).merged(section)
    assert (settings.max_retries, settings.retry_delay, settings.backoff) == (9, 5, BUILTIN.backoff)
    assert settings.actor_options()["max_retries"] == 9
    assert "cron" not in settings.actor_options()


def test_the_retry_middlewares_defaults_are_the_models():
    assert Retries().defaults == {name: getattr(BUILTIN, name) for name in Retries.actor_options - {"throws"}}


def test_a_wrong_setting_says_which_and_why():
    with pytest.raises(ValueError, match=r"max_retries: Input should be greater than or equal to 0"):
        validate_settings({"max_retries": -1})
    with pytest.raises(ValueError, match=r"max_retry: Extra inputs are not permitted"):
        validate_settings({"max_retry": 1})
