"""Steps: the unit a user writes. A step is a handler plus the triggers that run it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from pydantic import ValidationError

from .config import StepSettings
from .errors import StepDeclarationError
from .triggers import CronTrigger, HttpTrigger, QueueTrigger, StateTrigger, Trigger

Handler = TypeVar("Handler", bound=Callable[..., Any])

_STEP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Step:
    """A declared step. Built by the :func:`step` decorator; users rarely make one directly."""

    name: str
    handler: Callable[..., Any]
    triggers: tuple[Trigger, ...]
    description: str = ""
    flows: tuple[str, ...] = ()
    enqueues: tuple[str, ...] = ()
    #: Defaults for this step's settings given in code (``max_retries=5``...); config.toml overrides them.
    settings: dict[str, Any] = field(default_factory=dict)

    @cached_property  # asked on every request and message
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    @property
    def http_triggers(self) -> list[HttpTrigger]:
        return [t for t in self.triggers if isinstance(t, HttpTrigger)]

    @property
    def queue_triggers(self) -> list[QueueTrigger]:
        return [t for t in self.triggers if isinstance(t, QueueTrigger)]

    @property
    def state_triggers(self) -> list[StateTrigger]:
        return [t for t in self.triggers if isinstance(t, StateTrigger)]

    @property
    def cron_triggers(self) -> list[CronTrigger]:
        return [t for t in self.triggers if isinstance(t, CronTrigger)]

    @property
    def runs_on_workers(self) -> bool:
        """Queue-, state- and cron-triggered steps run as Dramatiq actors; HTTP steps run in the gateway."""
        return bool(self.queue_triggers or self.state_triggers or self.cron_triggers)

    @property
    def queue_name(self) -> str:
        """The RabbitMQ queue of this step's actor: the step's own name, so the UI reads well."""
        return self.name

    def queue_trigger_for(self, topic: str) -> QueueTrigger | None:
        return next((t for t in self.queue_triggers if t.topic == topic), None)

    def state_trigger_for(self, group: str) -> StateTrigger | None:
        return next((t for t in self.state_triggers if t.group == group), None)


class Registry:
    """Every declared step, by name, and the topics that connect them."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {}

    def add(self, step: Step) -> Step:
        if step.name in self.steps:
            other = self.steps[step.name].handler
            raise StepDeclarationError(
                f"step name {step.name!r} is declared twice ({other.__module__} and "
                f"{step.handler.__module__}); step names must be unique"
            )
        self.steps[step.name] = step
        return step

    def __iter__(self) -> Iterable[Step]:
        return iter(list(self.steps.values()))

    def __len__(self) -> int:
        return len(self.steps)

    def get(self, name: str) -> Step:
        try:
            return self.steps[name]
        except KeyError:
            raise StepDeclarationError(f"no step named {name!r}; known steps: {sorted(self.steps)}") from None

    def subscribers(self) -> dict[str, list[Step]]:
        """Topic -> the steps whose queue triggers listen to it (fan-out: each gets a copy)."""
        topics: dict[str, list[Step]] = {}
        for step in self.steps.values():
            for trigger in step.queue_triggers:
                topics.setdefault(trigger.topic, []).append(step)
        return topics

    def state_watchers(self) -> dict[str, list[tuple[Step, StateTrigger]]]:
        """State group -> the steps (and their triggers) that run when it changes."""
        groups: dict[str, list[tuple[Step, StateTrigger]]] = {}
        for step in self.steps.values():
            for trigger in step.state_triggers:
                groups.setdefault(trigger.group, []).append((step, trigger))
        return groups


#: The registry the :func:`step` decorator adds to unless told otherwise.
default_registry = Registry()


def step(
    *,
    name: str,
    triggers: Sequence[Trigger],
    description: str = "",
    flows: Sequence[str] = (),
    enqueues: Sequence[str] = (),
    registry: Registry | None = None,
    **settings: Any,
) -> Callable[[Handler], Handler]:
    """Declare a step: decorate its handler ``handler(input, ctx)`` (``def`` or ``async def``).

    Settings such as ``max_retries=5`` or ``dead_letter_queue="failed-orders"`` given here are
    defaults that ``[steps.<name>]`` in config.toml overrides.

    Example::

        @step(
            name="ProcessOrder",
            flows=["order-processing"],
            triggers=[queue("process-order", input=ProcessOrderEvent)],
            enqueues=["send-notification"],
        )
        def handler(order: ProcessOrderEvent, ctx: Context) -> None:
            ctx.enqueue("send-notification", {...})
    """
    if not _STEP_NAME.match(name):
        raise StepDeclarationError(
            f"step name {name!r} must start with a letter and hold only letters, digits, '_', '.', '-' "
            "(it names the step's RabbitMQ queue)"
        )
    if not triggers:
        raise StepDeclarationError(f"step {name!r} has no triggers; give it http(), queue(), state() or cron()")
    _check_settings(name, settings)

    def decorate(handler: Handler) -> Handler:
        declared = Step(
            name=name,
            handler=handler,
            triggers=tuple(triggers),
            description=description,
            flows=tuple(flows),
            enqueues=tuple(enqueues),
            settings=dict(settings),
        )
        (default_registry if registry is None else registry).add(declared)
        handler.step = declared  # type: ignore[attr-defined]
        return handler

    return decorate


def _check_settings(name: str, settings: dict[str, Any]) -> None:
    # The same rules as [steps.<name>] in config.toml, so a typo in code fails as loudly.
    try:
        StepSettings.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StepDeclarationError(f"step {name!r} has invalid settings: {problems}") from None
