"""The composition root: config, steps, state, broker, publisher and actors wired together once per process.

Nothing else in Conveyor builds these parts or knows how they fit: the front doors
(``actors``, ``gateway``, ``scheduler``) call :func:`boot`, and tests build a :class:`Runtime`
from a config and a registry of their own (see :mod:`conveyor.testing`).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from .config import Config, load_config
from .context import AnyContext, AsyncContext, Context
from .declare.cron_expressions import parse_cron
from .declare.flows import load_flows
from .declare.registry import Registry
from .declare.steps import Step
from .errors import ConfigError, ConveyorError, StateUnavailableError
from .logs import keep_payloads_out, setup_logging
from .messaging.broker import build_broker
from .messaging.priorities import resolve_priority
from .messaging.publisher import MessagePublisher, Publisher, on_event_loop
from .messaging.queues import declare_queues
from .metrics import MetricsSink, prepare_metrics_dir
from .settings import StepSettings
from .store import AsyncStateStore, StateStore, open_store
from .store.outbox import Outbox
from .tracing.logs import install as install_span_logs
from .tracing.otlp import OtlpSink, otlp_sink
from .tracing.queries import TraceStore
from .tracing.recorder import Recorder, SpanSink
from .tracing.spans import new_trace_id
from .tracing.stores import open_trace_store
from .tracing.tracer import Tracer, enqueue_source
from .worker.actors import declare_actor, queue_name
from .worker.failures import FailureRecords
from .worker.middleware import Conditions, DeadLetters, Priority, Retries
from .worker.middleware.tracing import Tracing
from .worker.pool_size import SPARE_CONNECTIONS, SizeStatePool
from .worker.shutdown import StopOnSignals

logger = logging.getLogger("conveyor.runtime")

#: Threads (and so connections) for the state calls of ``async def`` handlers, per process.
ASYNC_STATE_THREADS = 8

#: ``build(config, middleware, concurrency)``: the broker a runtime runs on (tests pass their own).
BrokerFactory = Callable[[Config, list[Middleware], dict[str, int]], dramatiq.Broker]


class Runtime:
    """Everything a Conveyor process needs, built from a config and the steps of a registry.

    Build it with :func:`boot` in a process that runs the system; tests may build one directly.

    Attributes:
      config: the validated config.toml.
      registry: the steps.
      settings: each step's settings, every layer applied.
      state: the state store (``def`` handlers call it).
      async_state: the same store, awaited (``async def`` handlers call it).
      broker: the Dramatiq broker, with Conveyor's middleware.
      actors: the actor of every queue-, state- and cron-triggered step, by step name.
      publisher: sends messages to topics and steps (see :mod:`conveyor.messaging.publisher`).
      outbox: publishes state triggers and staged messages after their commit, and sweeps those a crash left.
    """

    def __init__(self, config: Config, registry: Registry, *, broker_factory: BrokerFactory = build_broker) -> None:
        self.config = config
        self.registry = registry
        self.settings: dict[str, StepSettings] = {
            step.name: config.step_settings(step.name, step.settings) for step in registry
        }
        self.state: StateStore = open_store(
            config.state.url or config.state_path(),
            pool_size=config.state.pool_size or ASYNC_STATE_THREADS + SPARE_CONNECTIONS,
        )
        self.async_state = AsyncStateStore(self.state, threads=ASYNC_STATE_THREADS)
        self.failures = FailureRecords(self.state)
        #: Where this process's spans go (``None`` with tracing and metrics both off).
        self.recorder = build_recorder(config)
        self.tracer = Tracer(self.recorder, {step.name: next(iter(step.flows), None) for step in registry})
        if self.recorder is not None:
            install_span_logs()
            keep_payloads_out()
        self._trace_reader: TraceStore | None = None
        middleware: list[Middleware] = [
            Priority(max_priority=config.broker.max_priority),
            # Before Retries and DeadLetters, so it ends a run's span after they decided its fate.
            Tracing(self.tracer),
            Conditions(self.state),
            # Dramatiq runs after_* hooks in reverse order: Retries decides a message failed, then DeadLetters sees it.
            DeadLetters(self._publish_dead_letter, records=self.failures),
            Retries(defaults=config.step_defaults()),
            StopOnSignals(),  # acts only in `dramatiq actors` worker processes
            SizeStatePool(self.state, config.state.pool_size),
        ]
        concurrency = {
            queue_name(step, config.project.name): limit
            for step in registry.worker_steps()
            if (limit := self.settings[step.name].concurrency) is not None
        }
        self.broker = broker_factory(config, middleware, concurrency)
        self.actors: dict[str, dramatiq.Actor[..., Any]] = {
            step.name: declare_actor(
                self.broker, step, self.settings[step.name], self._message_context, deployment=config.project.name
            )
            for step in registry.worker_steps()
        }
        subscribers = {topic: [step.name for step in steps] for topic, steps in registry.subscribers().items()}
        self.publisher = MessagePublisher(
            self.broker, self.actors, subscribers, max_priority=config.broker.max_priority
        )
        self.publisher.tracer = self.tracer
        self.outbox = Outbox(
            self.state,
            send=self._send_state_change,
            resend=self.publisher.resend,
            in_background=self._background_for_loops,
        )
        self.state.watchers = {
            group: [(step.name, trigger.fires) for step, trigger in watchers]
            for group, watchers in registry.state_watchers().items()
        }
        self.state.on_commit = self.outbox.after_commit

    # -- what handlers get ---------------------------------------------------------------------

    def context(
        self,
        step: Step,
        *,
        trace_id: str | None = None,
        message_id: str | None = None,
        attempt: int | None = None,
        topic: str | None = None,
        publisher: Publisher | None = None,
    ) -> AnyContext:
        """The ``ctx`` for one run of ``step``: an :class:`AsyncContext` for an ``async def`` handler.

        ``publisher`` replaces the runtime's (a keyed HTTP request stages what it enqueues).
        """
        where: dict[str, Any] = {
            "publisher": publisher or self.publisher,
            "trace_id": trace_id or new_trace_id(),
            "message_id": message_id,
            "attempt": attempt,
            "topic": topic,
            "json_logs": self.config.logging.format == "json",
        }
        if step.is_async:
            return AsyncContext(step, state=self.async_state, **where)
        return Context(step, state=self.state, **where)

    def _message_context(self, step: Step, message: dramatiq.Message[Any] | None) -> AnyContext:
        options = message.options if message is not None else {}
        return self.context(
            step,
            trace_id=options.get("trace_id") or (message.message_id if message else "-"),
            message_id=message.message_id if message else None,
            attempt=options.get("retries", 0) + 1,
            topic=options.get("topic"),
        )

    # -- wiring between the parts --------------------------------------------------------------

    def _publish_dead_letter(self, topic: str, record: dict[str, Any], trace_id: str | None) -> None:
        token = enqueue_source.set("dead-letter")
        try:
            self.publisher.publish(topic, record, trace_id=trace_id)
        finally:
            enqueue_source.reset(token)

    def _send_state_change(self, step: str, change: dict[str, Any], trace_id: str | None, group: str) -> None:
        self.publisher.send(step, change, trace_id=trace_id, state_group=group)

    def _background_for_loops(self) -> concurrent.futures.Executor | None:
        # A write on an event loop publishes its triggers off the loop; if the process dies
        # first, they stay in the outbox for the sweep.
        return self.publisher.pool if on_event_loop() else None

    # -- start-up ------------------------------------------------------------------------------

    def cron_steps(self) -> list[tuple[Step, str]]:
        """``(step, expression)`` for every cron-triggered step, config overrides applied."""
        found = []
        for step in self.registry:
            for trigger in step.cron_triggers:
                found.append((step, self.settings[step.name].cron or trigger.expression))
        return found

    def declare_queues(self) -> None:
        """Create every step's queues now, so a mismatch with RabbitMQ stops start-up with a clear message."""
        if isinstance(self.broker, RabbitmqBroker):
            declare_queues(self.broker, [actor.queue_name for actor in self.actors.values()])

    def check(self) -> None:
        """Refuse to start on wiring mistakes: topics nobody reads, unknown steps in config, bad cron."""
        problems: list[str] = []
        unknown = sorted(set(self.config.steps) - set(self.registry.steps))
        if unknown:
            problems.append(
                f"config.toml has [steps.*] for undeclared steps {unknown}; declared: {sorted(self.registry.steps)}"
            )
        subscribers = self.registry.subscribers()
        unrouted: dict[str, list[str]] = {}
        for step in self.registry:
            targets = list(step.enqueues)
            if dead_letter_topic := self.settings[step.name].dead_letter_queue:
                targets.append(dead_letter_topic)
            for topic in targets:
                if topic not in subscribers:
                    unrouted.setdefault(topic, []).append(step.name)
        for topic, senders in sorted(unrouted.items()):
            problems.append(f"topic {topic!r} (enqueued by {', '.join(senders)}) has no subscribing step")
        for step in self.registry.worker_steps():
            try:
                resolve_priority(self.settings[step.name].priority, self.config.broker.max_priority)
            except ConveyorError as exc:
                problems.append(f"step {step.name!r}: {exc}")
        if problem := self._quorum_priorities():
            problems.append(problem)
        for step, expression in self.cron_steps():
            try:
                parse_cron(expression, timezone=self.config.scheduler.timezone, step=step.name)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("Conveyor cannot start:\n  - " + "\n  - ".join(problems))

    def _quorum_priorities(self) -> str | None:
        # RabbitMQ 3.x quorum queues refuse x-max-priority, so a step's priority would mean nothing.
        if self.config.broker.kind != "rabbitmq" or self.config.broker.queue_type != "quorum":
            return None
        steps = self.registry.worker_steps()
        prioritised = [step.name for step in steps if "priority" in self.settings[step.name].model_fields_set]
        if not prioritised:
            return None
        return (
            f'steps {", ".join(sorted(prioritised))} set a priority, but [broker] queue_type = "quorum" and '
            "RabbitMQ 3.x quorum queues have no message priorities; either keep classic queues "
            '([broker] queue_type = "classic") or drop the priority of those steps (in their code, '
            "[steps.<name>] and [defaults] of config.toml)"
        )

    def check_state(self) -> None:
        """Say in one log line when the state store cannot be reached (calls fail until it is back)."""
        check = getattr(self.state, "check", None)
        if check is None:
            return
        try:
            check()
        except StateUnavailableError as exc:
            logger.error("The state store is unreachable: %s. State calls fail until it answers.", exc)

    def traces(self) -> TraceStore | None:
        """The trace store, for reading (the console, the CLI); ``None`` with ``[tracing] enabled = false``."""
        if self._trace_reader is None and self.config.tracing.enabled:
            self._trace_reader = open_trace_store(self.config)
        return self._trace_reader

    def close(self) -> None:
        """Let go of the broker's connections, the publisher's threads and the state's connections."""
        if self.recorder is not None:
            self.recorder.close()
            for sink in self.recorder.sinks:
                if isinstance(sink, OtlpSink):
                    sink.close()
        if self._trace_reader is not None:
            self._trace_reader.close()
        self.publisher.close()
        self.broker.close()
        self.async_state.close()
        self.state.close()


def build_recorder(config: Config) -> Recorder | None:
    """The recorder of a process: the trace store if ``[tracing] enabled``, plus the other sinks."""
    tracing = config.tracing
    open_store = (lambda: open_trace_store(config)) if tracing.enabled else None
    sinks: list[SpanSink] = []
    if config.metrics.enabled:
        sinks.append(MetricsSink(config))
    if tracing.enabled and (exporter := otlp_sink(config)) is not None:
        sinks.append(exporter)
    if open_store is None and not sinks:
        return None
    return Recorder(open_store, sinks, buffer=tracing.buffer)


def build_runtime(config: Config, registry: Registry | None = None) -> Runtime:
    """Load the flows of ``config`` (unless a registry is given), build the runtime and check its wiring."""
    runtime = Runtime(config, load_flows(config.project.flows) if registry is None else registry)
    runtime.check()
    return runtime


_runtime: Runtime | None = None


def boot(config_path: str | Path | None = None, registry: Registry | None = None) -> Runtime:
    """Read config.toml, load the flows, build the runtime and declare its queues (once per process).

    This is what the front doors (``dramatiq actors``, ``python -m gateway``, ``python -m
    scheduler``) run; it connects to RabbitMQ. Later calls return the same runtime.
    """
    global _runtime
    if _runtime is None:
        config = load_config(config_path)
        if config.metrics.enabled:
            # Before the flows load: prometheus-client picks memory or files when it is first imported.
            prepare_metrics_dir(config)
        setup_logging(config.logging.level, format=config.logging.format)
        runtime = build_runtime(config, registry)
        runtime.declare_queues()
        runtime.check_state()
        # `dramatiq actors` finds the broker through get_broker(), not through this module.
        dramatiq.set_broker(runtime.broker)
        _runtime = runtime
    return _runtime


def boot_or_exit(config_path: str | Path | None = None) -> Runtime:
    """:func:`boot`, for a front door: a configuration or wiring mistake ends the process with its message."""
    try:
        return boot(config_path)
    except ConfigError as exc:
        # The operator's to fix: say what it is, without a traceback.
        raise SystemExit(f"conveyor: {exc}") from None


def current() -> Runtime:
    """The runtime :func:`boot` built in this process."""
    if _runtime is None:
        raise RuntimeError("Conveyor is not booted in this process; import actors or call conveyor.boot()")
    return _runtime
