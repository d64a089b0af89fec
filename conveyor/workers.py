"""Turn queue- and cron-triggered steps into Dramatiq actors: validate input, build ctx, run the handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from pydantic import BaseModel, ValidationError

from .context import Context
from .errors import InvalidInput, UndeclaredTopicError
from .middleware import ConditionNotMet
from .state_changes import StateChange
from .state_ops import StateOpError
from .steps import Step
from .tracing import current_trace_id
from .triggers import Condition

if TYPE_CHECKING:
    from .runtime import Runtime

#: Settings that configure the runtime rather than the actor.
NON_ACTOR_SETTINGS = frozenset({"cron"})


def declare_actor(runtime: Runtime, step: Step, settings: dict[str, Any]) -> dramatiq.Actor:
    """Declare ``step`` as an actor on the runtime's broker, its queue named after the step."""
    options = {k: v for k, v in settings.items() if k not in NON_ACTOR_SETTINGS and v is not None}
    # Mistakes in the step's own code or input fail the same way on every attempt: no retries.
    options["throws"] = (InvalidInput, UndeclaredTopicError, StateOpError)
    return dramatiq.Actor(
        _actor_function(runtime, step),
        broker=runtime.broker,
        actor_name=step.name,
        queue_name=step.queue_name,
        priority=0,
        options=options,
    )


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{"field": "items.0.price", "reason": "..."}]``."""
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "(root)", "reason": error["msg"]}
        for error in exc.errors()
    ]


def parse_input(step: Step, model: type[BaseModel] | None, data: Any) -> Any:
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(step.name, validation_errors(exc)) from None


def _prepare(runtime: Runtime, step: Step, data: Any) -> tuple[Any, Context]:
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    ctx = Context(
        runtime,
        step,
        trace_id=options.get("trace_id") or (message.message_id if message else "-"),
        message_id=message.message_id if message else None,
        attempt=options.get("retries", 0) + 1,
        topic=options.get("topic"),
    )
    current_trace_id.set(ctx.trace_id)
    model, condition = _input_rules(step, options)
    value = parse_input(step, model, data)
    if condition is not None and not condition(value, ctx):
        raise ConditionNotMet(f"{step.name}: condition is false")
    return value, ctx


def _input_rules(step: Step, options: dict[str, Any]) -> tuple[type[BaseModel] | None, Condition | None]:
    """The schema and condition of the trigger that sent this message (none for cron)."""
    if topic := options.get("topic"):
        queue_trigger = step.queue_trigger_for(topic)
        return (queue_trigger.input, queue_trigger.condition) if queue_trigger else (None, None)
    if group := options.get("state_group"):
        state_trigger = step.state_trigger_for(group)
        return StateChange, state_trigger.condition if state_trigger else None
    return None, None


def _actor_function(runtime: Runtime, step: Step) -> Callable[..., Any]:
    if step.is_async:

        async def run_async(data: Any = None) -> None:
            value, ctx = _prepare(runtime, step, data)
            await step.handler(value, ctx)
            await ctx.settle()

        run_async.__name__ = run_async.__qualname__ = step.name
        return run_async

    def run(data: Any = None) -> None:
        value, ctx = _prepare(runtime, step, data)
        step.handler(value, ctx)
        ctx.settle_sync()

    run.__name__ = run.__qualname__ = step.name
    return run
