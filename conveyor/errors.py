"""Conveyor's exceptions: a small hierarchy whose messages say what to do."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class for every error Conveyor raises on purpose."""


class ConfigError(ConveyorError):
    """``config.toml`` (or a step declaration) is invalid; start-up stops."""


class StepDeclarationError(ConfigError):
    """A step was declared in a way Conveyor cannot run."""


class FlowImportError(ConfigError):
    """A module under ``[project] flows`` failed to import; the message names the module and the line."""


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


class StateOpError(ConveyorError):
    """A state update operation is malformed or does not fit the stored value."""


class StateKeyError(ConveyorError, ValueError):
    """A state group or key that cannot be stored: empty, too long, or holding a NUL character."""


class StateValueError(ConveyorError, TypeError):
    """A state value that JSON cannot hold (a datetime, a set, an object of your own)."""


class StateUnavailableError(ConveyorError):
    """The state store cannot be reached (the PostgreSQL server is down or refuses the connection)."""


class StateConflictError(ConveyorError):
    """Two transactions waited on each other's keys (a deadlock); this one was undone: run it again.

    Only PostgreSQL raises it. A worker's retry runs the handler again, with its own backoff.
    """


class PublishError(ConveyorError):
    """RabbitMQ did not confirm a message, so it may not be stored."""


class UnsupportedBrokerError(ConveyorError):
    """An operator tool needs RabbitMQ, and this runtime runs on the in-memory broker."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} needs RabbitMQ, but this runtime uses the in-memory broker, whose messages live only "
            'inside the process that holds them; set [broker] kind = "rabbitmq" in config.toml (and unset '
            "CONVEYOR_BROKER) and run the workers on RabbitMQ"
        )


class BrokerUnavailableError(ConveyorError):
    """RabbitMQ (or its management API) could not be reached, or refused the request."""


class UnknownStepError(ConveyorError):
    """A step name that no queue- or cron-triggered step has."""

    def __init__(self, step: str, known: list[str], *, http_only: bool = False) -> None:
        reason = "is an HTTP step, which runs in the gateway and has no queue" if http_only else "is not declared"
        super().__init__(f"step {step!r} {reason}; steps with queues: {', '.join(sorted(known)) or 'none'}")
        self.step = step


class DeadMessageNotFoundError(ConveyorError):
    """No message with that id is in the step's dead-letter queue."""

    def __init__(self, step: str, message_id: str) -> None:
        super().__init__(
            f"no message {message_id!r} in the dead-letter queue of step {step!r}; it may have been replayed "
            f"or purged already (list them with `python -m actors dlq list {step}`)"
        )
        self.step = step
        self.message_id = message_id
