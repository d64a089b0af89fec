from __future__ import annotations

import pytest
from pydantic import BaseModel

from conveyor import ConfigError, Registry, queue, step
from conveyor.config import load_config
from conveyor.settings import StepSettings
from tests.helpers import memory_config, memory_runtime


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_default_file_means_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONVEYOR_CONFIG", raising=False)
    config = load_config()
    assert config.gateway.port == 3000
    assert config.gateway.max_body_size == 1024 * 1024
    assert config.scheduler.timezone == "UTC"


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "[steps.ProcessOrder]\nmax_retrys = 3\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message
    assert "steps.ProcessOrder.max_retrys: unknown key" in message


def test_wrong_type_names_key_and_expected_type(tmp_path):
    path = write(tmp_path, '[defaults]\nretry_delay = "5s"\nbackoff = "linear"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "defaults.retry_delay: expected a valid integer, got '5s'" in message
    assert "defaults.backoff: expected 'exponential' or 'fixed', got 'linear'" in message


def test_invalid_toml_is_reported_with_the_file(tmp_path):
    path = write(tmp_path, "[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_precedence_builtin_defaults_code_step(tmp_path):
    config = memory_config(tmp_path, "[defaults]\nmax_retries = 7\nretry_delay = 50\n[steps.S]\nretry_delay = 9\n")
    code = StepSettings(max_retries=2, backoff="fixed", retry_delay=100)
    settings = config.step_settings("S", code)
    assert settings.max_retries == 2  # code beats [defaults]
    assert settings.retry_delay == 9  # [steps.S] beats code
    assert settings.backoff == "fixed"
    assert settings.max_retry_delay == 300_000  # built-in
    assert config.step_settings("Other").max_retries == 7


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_BROKER_URL", "amqp://u:p@example:5672/%2F")
    assert load_config(write(tmp_path, "")).broker.url == "amqp://u:p@example:5672/%2F"


class In(BaseModel):
    id: str


def test_startup_lists_topics_without_subscribers(tmp_path):
    registry = Registry()
    step(name="A", triggers=[queue("a", input=In)], enqueues=["nowhere", "also-nowhere"], registry=registry)(
        lambda i, c: None
    )
    with pytest.raises(ConfigError) as raised:
        memory_runtime(tmp_path, registry)
    assert "topic 'also-nowhere' (enqueued by A) has no subscribing step" in str(raised.value)
    assert "topic 'nowhere' (enqueued by A) has no subscribing step" in str(raised.value)


def test_startup_rejects_settings_for_undeclared_steps(tmp_path):
    registry = Registry()
    step(name="A", triggers=[queue("a")], registry=registry)(lambda i, c: None)
    with pytest.raises(ConfigError, match=r"undeclared steps \['Typo'\]"):
        memory_runtime(tmp_path, registry, "[steps.Typo]\nmax_retries = 1\n")


def test_dead_letter_topic_needs_a_subscriber(tmp_path):
    registry = Registry()
    step(name="A", triggers=[queue("a")], registry=registry)(lambda i, c: None)
    with pytest.raises(ConfigError, match="topic 'a.failed' .* has no subscribing step"):
        memory_runtime(tmp_path, registry, '[steps.A]\ndead_letter_queue = "a.failed"\n')


def test_union_and_validator_errors_read_plainly(tmp_path):
    path = write(tmp_path, '[defaults]\npriority = "urgent"\n[scheduler]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "  defaults.priority: expected a valid integer or 'low', 'normal' or 'high', got 'urgent'" in message
    assert "scheduler.timezone: expected a time zone name such as 'UTC'" in message


def test_a_named_config_file_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config()


def test_settings_in_code_are_checked_like_config(tmp_path):
    from conveyor.errors import StepDeclarationError

    with pytest.raises(StepDeclarationError, match="step 'S' has invalid settings: max_retry: Extra inputs"):
        step(name="S", triggers=[queue("s")], registry=Registry(), max_retry=5)
