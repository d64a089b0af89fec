"""Steps: the unit a user writes. A step is a handler plus the triggers that run it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeVar

from ..errors import StepDeclarationError
from ..settings import StepSettings, validate_settings
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
    #: This step's settings given in code (``max_retries=5``...); config.toml overrides them.
    settings: StepSettings = field(default_factory=StepSettings)

    @property
    def module(self) -> str:
        """The module that declares the step, for error messages."""
        return getattr(self.handler, "__module__", "?")

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

    def queue_trigger_for(self, topic: str) -> QueueTrigger | None:
        return next((t for t in self.queue_triggers if t.topic == topic), None)

    def state_trigger_for(self, group: str) -> StateTrigger | None:
        return next((t for t in self.state_triggers if t.group == group), None)


class StepCollector(Protocol):
    """Where :func:`step` adds what it declares when given one (a :class:`~conveyor.Registry`)."""

    def add(self, step: Step) -> Step: ...


def step(
    *,
    name: str,
    triggers: Sequence[Trigger],
    description: str = "",
    flows: Sequence[str] = (),
    enqueues: Sequence[str] = (),
    registry: StepCollector | None = None,
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
            "(it names the step's actor and ends its RabbitMQ queue's name)"
        )
    if not triggers:
        raise StepDeclarationError(f"step {name!r} has no triggers; give it http(), queue(), state() or cron()")
    try:
        # The same rules as [steps.<name>] in config.toml, so a typo in code fails as loudly.
        code_settings = validate_settings(settings)
    except ValueError as exc:
        raise StepDeclarationError(f"step {name!r} has invalid settings: {exc}") from None

    def decorate(handler: Handler) -> Handler:
        _check_signature(name, handler)
        declared = Step(
            name=name,
            handler=handler,
            triggers=tuple(triggers),
            description=description,
            flows=tuple(flows),
            enqueues=tuple(enqueues),
            settings=code_settings,
        )
        if registry is not None:
            registry.add(declared)
        # How load_flows finds the step in its module: declaring registers nothing globally.
        handler.__dict__[STEP_ATTRIBUTE] = declared
        return handler

    return decorate


#: The attribute of a decorated handler that holds its :class:`Step`.
STEP_ATTRIBUTE = "step"


def declared_step(value: object) -> Step | None:
    """The step that ``value`` (a decorated handler) declares, if it is one."""
    found = getattr(value, STEP_ATTRIBUTE, None)
    return found if isinstance(found, Step) else None


def _check_signature(name: str, handler: Callable[..., Any]) -> None:
    where = f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)!s}"
    if not callable(handler):
        raise StepDeclarationError(f"step {name!r}: @step decorates a function, got {handler!r} in {where}")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    positional = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    required_extra = [
        p.name for p in signature.parameters.values() if p.default is p.empty and p.kind is p.KEYWORD_ONLY
    ] + [p.name for p in positional[2:] if p.default is p.empty]
    if (len(positional) < 2 and not variadic) or required_extra:
        raise StepDeclarationError(
            f"step {name!r} in {where}: a handler is called as handler(input, ctx), "
            f"but its signature is {signature}; declare it as def handler(input, ctx)"
        )
    if len(positional) >= 2:
        _check_context_kind(name, where, handler, positional[1])


def _check_context_kind(name: str, where: str, handler: Callable[..., Any], ctx: inspect.Parameter) -> None:
    """An ``async def`` handler awaits its state calls (AsyncContext); a ``def`` handler does not (Context)."""
    annotation = ctx.annotation
    named = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    kind = named.rsplit(".", 1)[-1]
    if inspect.iscoroutinefunction(handler) and kind == "Context":
        raise StepDeclarationError(
            f"step {name!r} in {where}: an async def handler gets an AsyncContext, whose state calls are "
            f"awaited (await {ctx.name}.state.get(...)); annotate it as {ctx.name}: AsyncContext"
        )
    if not inspect.iscoroutinefunction(handler) and kind == "AsyncContext":
        raise StepDeclarationError(
            f"step {name!r} in {where}: a def handler gets a Context, whose state calls return at once; "
            f"annotate it as {ctx.name}: Context, or make the handler async def"
        )
