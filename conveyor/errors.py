"""Conveyor's exceptions: a small hierarchy whose messages say what to do."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class for every error Conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """``config.toml`` (or a step declaration) is invalid; start-up stops."""


class StepDeclarationError(ConfigError):
    """A step was declared in a way Conveyor cannot run."""


class UndeclaredTopicError(ConveyorError):
    """A step enqueued to a topic that is not in its ``enqueues`` list."""

    def __init__(self, step: str, topic: str, declared: list[str]) -> None:
        super().__init__(
            f"step {step!r} enqueued to topic {topic!r}, which it does not declare; "
            f"add {topic!r} to its enqueues=[...] (declared: {declared or 'none'})"
        )
        self.step = step
        self.topic = topic


class InvalidInput(ConveyorError):
    """A message failed its step's input schema: it is dead-lettered at once, never retried."""

    def __init__(self, step: str, errors: list[dict[str, str]]) -> None:
        reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        super().__init__(f"input for step {step!r} failed its schema: {reasons}")
        self.step = step
        self.errors = errors


class PublishError(ConveyorError):
    """RabbitMQ did not confirm a message, so it may not be stored."""
