"""The runtime: config, steps, broker, actors and state wired together once per process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import pkgutil
import uuid
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from .async_publisher import AsyncPublisher
from .broker import build_broker
from .config import Config, load_config
from .context import on_event_loop
from .cron import parse_cron
from .dead_letter_records import DeadLetterRecords
from .delays import delay_queue
from .errors import ConfigError, ConveyorError, PublishError
from .logs import setup_logging
from .middleware import Conditions, DeadLetters, Priority, Retries
from .middleware.priority import resolve_priority
from .queues import declare_queues
from .state_store import PendingTrigger, StateStore
from .steps import Registry, Step, default_registry
from .workers import declare_actor

logger = logging.getLogger("conveyor.runtime")


class Runtime:
    """Everything a Conveyor process needs: build it with :func:`boot`."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.state = StateStore(config.state_path())
        self.settings = {step.name: config.step_settings(step.name, step.settings) for step in registry}
        retry_defaults = {k: v for k, v in config.step_settings("", {}).items() if k in _RETRY_KEYS}
        concurrency = {
            step.queue_name: self.settings[step.name]["concurrency"]
            for step in registry
            if self.settings[step.name].get("concurrency")
        }
        middleware = [
            Priority(max_priority=config.broker.max_priority),
            Conditions(self.state),
            # Dramatiq runs after_* hooks in reverse order: Retries decides a message failed, then DeadLetters sees it.
            DeadLetters(self._publish_dead_letter, records=DeadLetterRecords(self.state)),
            Retries(**retry_defaults),
        ]
        self.broker = build_broker(config, middleware, concurrency)
        dramatiq.set_broker(self.broker)
        self.actors: dict[str, dramatiq.Actor] = {
            step.name: declare_actor(self, step, self.settings[step.name]) for step in registry if step.runs_on_workers
        }
        self.subscribers = registry.subscribers()
        #: Set by the gateway: publishes from its event loop with pipelined confirms.
        self.async_publisher: AsyncPublisher | None = None
        #: The event loop ``async_publisher`` lives on, for handlers running in other threads.
        self.async_loop: asyncio.AbstractEventLoop | None = None
        #: Threads that publish for async handlers, each reusing its own RabbitMQ channel.
        self.publisher_pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="conveyor-publish")
        self.state.watchers = {
            group: [(step.name, trigger.matches) for step, trigger in watchers]
            for group, watchers in registry.state_watchers().items()
        }
        self.state.on_commit = self._publish_state_triggers

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str | None = None,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> list[str]:
        """Send ``data`` to every step subscribed to ``topic``; returns the message ids.

        Returns once RabbitMQ confirmed every copy. ``delay`` is in seconds; ``priority`` is
        ``"low"``, ``"normal"``, ``"high"`` or an integer up to ``[broker] max_priority``.
        """
        return [self._enqueue(message, delay) for message in self._messages(topic, data, trace_id, priority)]

    def send(
        self,
        step_name: str,
        data: Any = None,
        *,
        topic: str | None = None,
        trace_id: str | None = None,
        delay: float | None = None,
        **options: Any,
    ) -> str:
        """Send one message straight to a step's actor (cron firings, state triggers, replays).

        Extra ``options`` become Dramatiq message options (``priority=``, ``state_group=``...).
        """
        return self._enqueue(self._message(step_name, data, topic=topic, trace_id=trace_id, **options), delay)

    def _enqueue(self, message: dramatiq.Message, delay: float | None) -> str:
        try:
            return self.broker.enqueue(message, delay=_milliseconds(delay)).message_id
        except dramatiq.errors.BrokerConnectionError as exc:
            raise PublishError(
                f"RabbitMQ did not take the message for step {message.actor_name!r} "
                f"(topic {message.options.get('topic')!r}): {exc}"
            ) from exc

    async def publish_async(
        self,
        topic: str,
        data: Any,
        *,
        trace_id: str | None = None,
        delay: float | None = None,
        priority: int | str | None = None,
    ) -> list[str]:
        """:meth:`publish` for an event loop, through :attr:`async_publisher`: confirms are
        awaited, not waited for, so many publishes share the channel's round trips."""
        assert self.async_publisher is not None, "publish_async needs an AsyncPublisher (the gateway sets one)"
        messages = self._messages(topic, data, trace_id, priority)
        delay_ms = _milliseconds(delay)
        if len(messages) == 1:
            await self._publish_async(messages[0], delay_ms)  # the usual case: no gather, no extra task
        else:
            await asyncio.gather(*(self._publish_async(message, delay_ms) for message in messages))
        return [message.message_id for message in messages]

    async def _publish_async(self, message: dramatiq.Message, delay_ms: int | None) -> None:
        publisher = self.async_publisher
        assert publisher is not None
        self.broker.emit_before("enqueue", message, delay_ms)  # middleware (priority) sees it as in enqueue()
        routing_key = message.queue_name
        if delay_ms:
            routing_key, arguments = delay_queue(message.queue_name, delay_ms)
            await publisher.declare(routing_key, arguments)
        await publisher.publish(
            routing_key,
            message.encode(),
            message_id=message.message_id,
            priority=message.options.get("broker_priority"),
        )
        self.broker.emit_after("enqueue", message, delay_ms)

    def _message(
        self, step_name: str, data: Any, *, topic: str | None, trace_id: str | None, **options: Any
    ) -> dramatiq.Message:
        if "priority" in options:
            resolve_priority(options["priority"], self.config.broker.max_priority)  # fail here, not in a hook
        return self.actors[step_name].message_with_options(
            args=(data,), topic=topic, trace_id=trace_id or new_trace_id(), **options
        )

    def _messages(
        self, topic: str, data: Any, trace_id: str | None, priority: int | str | None
    ) -> list[dramatiq.Message]:
        """One message per step subscribed to ``topic``, sharing one trace."""
        steps = self.subscribers.get(topic)
        if not steps:
            raise ConfigError(f"topic {topic!r} has no subscribing step")
        trace_id = trace_id or new_trace_id()
        options = {} if priority is None else {"priority": priority}
        return [self._message(step.name, data, topic=topic, trace_id=trace_id, **options) for step in steps]

    def cron_steps(self) -> list[tuple[Step, str]]:
        """``(step, expression)`` for every cron-triggered step, config overrides applied."""
        found = []
        for step in self.registry:
            for trigger in step.cron_triggers:
                found.append((step, self.settings[step.name].get("cron") or trigger.expression))
        return found

    def _publish_state_triggers(self, pending: list[PendingTrigger]) -> None:
        # Called right after the write committed. From an event loop, publish off the loop; if
        # the process dies first, the triggers stay in the outbox for the sweep.
        if on_event_loop():
            self.publisher_pool.submit(self.publish_pending_triggers, pending)
        else:
            self.publish_pending_triggers(pending)

    def publish_pending_triggers(self, pending: list[PendingTrigger]) -> int:
        """Publish recorded state triggers and forget those RabbitMQ confirmed; returns how many."""
        done: list[int] = []
        try:
            for trigger in pending:
                self.send(trigger.step, trigger.change, trace_id=trigger.trace_id, state_group=trigger.change["group"])
                done.append(trigger.id)
        except PublishError as exc:
            logger.warning("State trigger publish failed (%s); the sweep will retry it.", exc)
        finally:
            self.state.triggers_published(done)
        return len(done)

    def sweep_state_triggers(self, older_than: float = 10.0) -> int:
        """Publish state triggers a crash left in the outbox (recorded over ``older_than`` seconds ago)."""
        count = 0
        while pending := self.state.pending_triggers(older_than=older_than):
            published = self.publish_pending_triggers(pending)
            count += published
            if published < len(pending):
                break
        if count:
            logger.info("Swept %d state trigger(s) left unpublished.", count)
        return count

    def _publish_dead_letter(self, topic: str, record: dict[str, Any], trace_id: str | None) -> None:
        self.publish(topic, record, trace_id=trace_id)

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
        unrouted: dict[str, list[str]] = {}
        for step in self.registry:
            targets = list(step.enqueues)
            if dlq := self.settings[step.name].get("dead_letter_queue"):
                targets.append(dlq)
            for topic in targets:
                if topic not in self.subscribers:
                    unrouted.setdefault(topic, []).append(step.name)
        for topic, senders in sorted(unrouted.items()):
            problems.append(f"topic {topic!r} (enqueued by {', '.join(senders)}) has no subscribing step")
        for step in filter(lambda s: s.runs_on_workers, self.registry):
            try:
                resolve_priority(self.settings[step.name]["priority"], self.config.broker.max_priority)
            except ConveyorError as exc:
                problems.append(f"step {step.name!r}: {exc}")
        for step, expression in self.cron_steps():
            try:
                parse_cron(expression, timezone=self.config.scheduler.timezone, step=step.name)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigError("Conveyor cannot start:\n  - " + "\n  - ".join(problems))


_RETRY_KEYS = ("max_retries", "backoff", "retry_delay", "max_retry_delay")


def _milliseconds(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds else None


def new_trace_id() -> str:
    return uuid.uuid4().hex


def import_flows(packages: list[str]) -> None:
    """Import every module under each package so that their ``@step`` declarations run."""
    for name in packages:
        try:
            package = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                raise ConfigError(f"[project] flows lists {name!r}, which is not an importable package") from None
            raise
        for module in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
            importlib.import_module(module.name)


_runtime: Runtime | None = None


def boot(config_path: str | Path | None = None, registry: Registry | None = None) -> Runtime:
    """Load config.toml, import the flows, build the broker and declare every actor (once per process)."""
    global _runtime
    if _runtime is None:
        config = load_config(config_path)
        setup_logging(config.logging.level)
        import_flows(config.project.flows)
        runtime = Runtime(config, default_registry if registry is None else registry)
        runtime.check()
        runtime.declare_queues()
        _runtime = runtime
    return _runtime


def current() -> Runtime:
    """The runtime :func:`boot` built in this process."""
    if _runtime is None:
        raise RuntimeError("Conveyor is not booted in this process; import actors or call conveyor.boot()")
    return _runtime
