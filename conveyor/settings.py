"""A step's settings: one typed model for config.toml, ``@step(...)`` keywords and actor options.

The field defaults are the built-in defaults. Each layer sets only the fields it names, and the
later layer wins: built-in < ``[defaults]`` < the step's code < ``[steps.<Name>]``.
Most settings travel to the workers as Dramatiq actor options, read by Conveyor's middleware;
the few marked ``actor_option=False`` configure the runtime instead (the scheduler, the broker).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Priority = int | Literal["low", "normal", "high"]


def _runtime_only() -> dict[str, Any]:
    return {"actor_option": False}


class StepSettings(BaseModel):
    """Per-step settings. Adding one means a field here and the middleware (or part) that reads it."""

    # Strict: TOML already has types, so "5" for an integer is a mistake worth reporting.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    max_retries: int = Field(default=3, ge=0, description="retries after the first attempt")
    backoff: Literal["exponential", "fixed"] = Field(default="exponential", description="how retry delays grow")
    retry_delay: int = Field(default=1000, ge=0, description="milliseconds before the first retry")
    max_retry_delay: int = Field(default=300_000, ge=0, description="milliseconds, cap for exponential backoff")
    dead_letter_queue: str | None = Field(
        default=None, min_length=1, description="topic that gets a record of each message that failed for good"
    )
    time_limit: int = Field(default=600_000, gt=0, description="milliseconds a handler may run")
    priority: Priority = Field(default="normal", description="default priority of messages to this step")
    concurrency: int | None = Field(
        default=None, ge=1, description="messages at once per worker process", json_schema_extra=_runtime_only()
    )
    cron: str | None = Field(
        default=None, description="replaces the step's cron expression", json_schema_extra=_runtime_only()
    )

    def merged(self, layer: StepSettings) -> StepSettings:
        """These settings with every field that ``layer`` names (explicitly) taken from it."""
        return self.model_copy(update={name: getattr(layer, name) for name in layer.model_fields_set})

    def actor_options(self) -> dict[str, Any]:
        """The settings that become Dramatiq actor options (those not ``None``)."""
        return {name: value for name in actor_option_names() if (value := getattr(self, name)) is not None}


def actor_option_names() -> frozenset[str]:
    """Names of the settings that travel as actor options (the middleware declare them)."""
    return frozenset(
        name
        for name, field in StepSettings.model_fields.items()
        if not isinstance(field.json_schema_extra, dict) or field.json_schema_extra.get("actor_option", True)
    )


#: The built-in defaults: what a step gets when nothing else says otherwise.
BUILTIN = StepSettings()


def validate_settings(values: dict[str, Any]) -> StepSettings:
    """``values`` as :class:`StepSettings`; raises ``ValueError`` with every problem on one line."""
    try:
        return StepSettings.model_validate(values)
    except ValidationError as exc:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
