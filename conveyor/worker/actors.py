"""Turn queue-, state- and cron-triggered steps into Dramatiq actors: validate input, build ctx, run the handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage
from pydantic import BaseModel

from ..context import AnyContext
from ..declare.state_changes import StateChange
from ..declare.steps import Step
from ..declare.triggers import Condition
from ..declare.validation import parse_input
from ..errors import InvalidInput, StateKeyError, StateOpError, StateValueError, UndeclaredTopicError
from ..settings import StepSettings
from ..tracing import current_trace_id
from .middleware import ConditionNotMet

#: ``make_context(step, message)``: the context a handler gets for ``message`` (the composition root's).
ContextFactory = Callable[[Step, "dramatiq.Message[Any] | None"], AnyContext]

#: Mistakes in the step's own code or input fail the same way on every attempt: no retries.
MISTAKES = (InvalidInput, UndeclaredTopicError, StateOpError, StateKeyError, StateValueError)


def queue_name(step: Step, deployment: str) -> str:
    """The RabbitMQ queue of ``step``'s actor: ``<deployment>.<flow>.<Step>``, ``<deployment>.<Step>`` with no flow.

    ``deployment`` is ``[project] name``; the flow is the step's first. So RabbitMQ's UI groups
    queues by deployment, then flow, and two deployments on one vhost never share a queue.
    Dramatiq's ``.DQ`` and ``.XQ`` and Conveyor's ``.delay.<ms>ms`` queues add to this name.
    """
    return ".".join([deployment, *step.flows[:1], step.name])


def declare_actor(
    broker: dramatiq.Broker, step: Step, settings: StepSettings, make_context: ContextFactory, *, deployment: str
) -> dramatiq.Actor[..., Any]:
    """Declare ``step`` as an actor on ``broker``, named after the step, its queue named by :func:`queue_name`."""
    return dramatiq.Actor(
        _actor_function(step, make_context),
        broker=broker,
        actor_name=step.name,
        queue_name=queue_name(step, deployment),
        priority=0,
        options={**settings.actor_options(), "throws": MISTAKES},
    )


def _prepare(step: Step, make_context: ContextFactory, data: Any) -> tuple[Any, AnyContext]:
    message = CurrentMessage.get_current_message()
    ctx = make_context(step, message)
    current_trace_id.set(ctx.trace_id)
    return handler_input(step, message.options if message is not None else {}, data, ctx), ctx


def handler_input(step: Step, options: dict[str, Any], data: Any, ctx: AnyContext) -> Any:
    """``data`` validated against the schema of the trigger that sent it (the message's ``topic`` or
    ``state_group`` option; none for cron); raises :class:`ConditionNotMet` when its condition is false."""
    model, condition = _input_rules(step, options)
    value = parse_input(step.name, model, data)
    if condition is not None and not condition(value, ctx):
        raise ConditionNotMet(f"{step.name}: condition is false")
    return value


def _input_rules(step: Step, options: dict[str, Any]) -> tuple[type[BaseModel] | None, Condition | None]:
    """The schema and condition of the trigger that sent this message (none for cron)."""
    if topic := options.get("topic"):
        queue_trigger = step.queue_trigger_for(topic)
        return (queue_trigger.input, queue_trigger.condition) if queue_trigger else (None, None)
    if group := options.get("state_group"):
        state_trigger = step.state_trigger_for(group)
        return StateChange, state_trigger.condition if state_trigger else None
    return None, None


def _actor_function(step: Step, make_context: ContextFactory) -> Callable[..., Any]:
    if step.is_async:

        async def run_async(data: Any = None) -> None:
            value, ctx = _prepare(step, make_context, data)
            await step.handler(value, ctx)
            await ctx.settle()

        run_async.__name__ = run_async.__qualname__ = step.name
        return run_async

    def run(data: Any = None) -> None:
        value, ctx = _prepare(step, make_context, data)
        step.handler(value, ctx)
        ctx.settle_sync()

    run.__name__ = run.__qualname__ = step.name
    return run
