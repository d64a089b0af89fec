"""The registry: every step of one runtime, by name, and the topics and state groups that connect them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..errors import StepDeclarationError
from .steps import Step
from .triggers import StateTrigger


class Registry:
    """The steps of one runtime. Built by :func:`~conveyor.declare.flows.load_flows`, or by hand in tests::

    registry = Registry()

    @step(name="Probe", triggers=[queue("probe")], registry=registry)
    def probe(data, ctx): ...
    """

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self.steps: dict[str, Step] = {}
        for step in steps:
            self.add(step)

    def add(self, step: Step) -> Step:
        """Add ``step``; a second step with the same name is an error naming both modules."""
        if step.name in self.steps:
            other = self.steps[step.name]
            if other is step:
                return step
            raise StepDeclarationError(
                f"step name {step.name!r} is declared twice ({other.module} and {step.module}); "
                "step names must be unique"
            )
        self.steps[step.name] = step
        return step

    def __iter__(self) -> Iterator[Step]:
        return iter(list(self.steps.values()))

    def __len__(self) -> int:
        return len(self.steps)

    def __contains__(self, name: object) -> bool:
        return name in self.steps

    def get(self, name: str) -> Step:
        """The step called ``name``; raises :class:`~conveyor.errors.StepDeclarationError` naming the known ones."""
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

    def worker_steps(self) -> list[Step]:
        """The steps that run as Dramatiq actors (queue-, state- and cron-triggered)."""
        return [step for step in self.steps.values() if step.runs_on_workers]
