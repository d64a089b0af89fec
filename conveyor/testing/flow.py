"""Run whole flows in the test's process: the real runtime, gateway app and middleware on an in-process broker."""

from __future__ import annotations

import shutil
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware
from starlette.testclient import TestClient

from ..config import Config, parse_config
from ..declare.flows import load_flows
from ..errors import ConfigError, StepDeclarationError
from ..gateway.app import build_app
from ..messaging.broker import with_basics
from ..ops.dlq import DeadMessage
from ..runtime import Runtime
from ..scheduling import fire_cron_step
from ..store import StateStore
from ..tracing.queries import TraceDetail
from .broker import InProcessBroker, SentMessage
from .records import LogCapture, LogLine, capturing_logs


class FlowEnvironment:
    """Flows running in process: POST to their HTTP steps, drain their queues, assert on the state.

    Everything is the real thing but RabbitMQ and the processes: the flows' steps, config
    settings, schemas, the gateway's app (through Starlette's ``TestClient``), retries, dead
    letters, conditions, priorities, delays and state triggers. Delays and retry backoff do not
    make the test wait: :meth:`join` moves a clock forward instead (``real_delays=True`` waits)::

        from conveyor.testing import FlowEnvironment

        def test_an_order_goes_through():
            with FlowEnvironment("flows.orders") as flow:
                order = flow.http.post("/orders", json={...}).json()
                flow.join()
                assert flow.state.get("orders", order["orderId"])["status"] == "completed"

    Parameters:
      flows: the flow packages to load (default: ``[project] flows`` of ``config``, else ``flows``).
      config: a config.toml to take settings from (its broker and state are replaced).
      settings: TOML laid over it, e.g. ``"[steps.ProcessOrder]\\nmax_retries = 1"``.
      real_delays: wait out delays and backoff in real time instead of skipping ahead.
      worker_threads: threads the in-process worker runs handlers on.
      log_level: the level from which log lines are kept.
    """

    def __init__(
        self,
        *flows: str,
        config: str | Path | None = None,
        settings: str = "",
        real_delays: bool = False,
        worker_threads: int = 4,
        log_level: str = "DEBUG",
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="conveyor-flow-"))
        file_settings, source = _read_config(config)
        packages = list(flows) or file_settings.get("project", {}).get("flows") or ["flows"]
        registry = load_flows(packages)
        # The project's config.toml names the steps of every flow; a test loads only some of them.
        file_steps = file_settings.get("steps", {})
        file_settings["steps"] = {name: table for name, table in file_steps.items() if name in registry}
        self.config = _test_config(self._dir, file_settings, source, settings, packages)
        self._real_delays = real_delays
        self._broker: InProcessBroker | None = None
        self.runtime = Runtime(self.config, registry, broker_factory=self._make_broker)
        self.runtime.check()
        self._logs = LogCapture()
        self._capture = capturing_logs(self._logs, log_level)
        self._worker_threads = worker_threads
        self._worker: dramatiq.Worker | None = None
        self._client: TestClient | None = None
        self._dead_seen = 0

    def _make_broker(
        self, config: Config, middleware: list[Middleware], concurrency: dict[str, int]
    ) -> dramatiq.Broker:
        self._broker = InProcessBroker(with_basics(middleware), concurrency=concurrency, real_delays=self._real_delays)
        return self._broker

    @property
    def broker(self) -> InProcessBroker:
        """The in-process broker the flows run on."""
        assert self._broker is not None
        return self._broker

    @property
    def state(self) -> StateStore:
        """The flows' state store (a SQLite file in a temp dir)."""
        return self.runtime.state

    @property
    def http(self) -> TestClient:
        """An HTTP client for the flows' HTTP steps (Starlette's ``TestClient`` on the gateway's app)."""
        if self._client is None:
            raise RuntimeError("the environment is not started: use it as `with FlowEnvironment(...) as flow:`")
        return self._client

    # -- sending work ----------------------------------------------------------------------

    def publish(
        self, topic: str, data: Any, *, delay: float | None = None, priority: int | str | None = None
    ) -> list[str]:
        """Enqueue ``data`` to every step subscribed to ``topic``, as a step would; returns the message ids."""
        return self.runtime.publisher.publish(topic, data, delay=delay, priority=priority)

    def fire(self, step_name: str) -> str:
        """Fire a cron step now, as the scheduler does on its schedule; returns the message id."""
        cron_steps = [step.name for step, _ in self.runtime.cron_steps()]
        if step_name not in cron_steps:
            raise StepDeclarationError(f"step {step_name!r} has no cron trigger; cron steps: {sorted(cron_steps)}")
        return fire_cron_step(self.runtime, step_name)

    def sweep(self) -> int:
        """Publish the state triggers left in the outbox, as the scheduler's sweep does; returns how many."""
        return self.runtime.outbox.sweep(older_than=0)

    @contextmanager
    def refusing(self, step_name: str, *, times: int | None = None) -> Iterator[None]:
        """While inside, the broker refuses messages to ``step_name``'s queue, as RabbitMQ does when
        it does not confirm a publish (a full queue, a lost connection): the sender gets a
        :class:`~conveyor.errors.PublishError`, an HTTP step answers 503. ``times`` refuses only
        that many."""
        if step_name not in self.runtime.actors:
            raise StepDeclarationError(
                f"step {step_name!r} has no queue; steps with queues: {sorted(self.runtime.actors)}"
            )
        with self.broker.refusals.refusing(self.runtime.actors[step_name].queue_name, times):
            yield

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the worker while inside: what is published or posted waits in its queue, a backlog.

        On the way out the worker takes the waiting messages as RabbitMQ would hand them out,
        highest priority first, at most ``concurrency`` (else 2 per worker thread) of a step at
        a time::

            with flow.paused():
                for n in range(20):
                    flow.publish("email", {"n": n}, priority="low")
                flow.publish("email", {"n": "urgent"}, priority="high")
            flow.join()  # "urgent" ran first
        """
        worker = self._worker
        if worker is None:
            raise RuntimeError("the environment is not started: use it as `with FlowEnvironment(...) as flow:`")
        worker.pause()
        try:
            yield
        finally:
            worker.resume()

    # -- waiting for it --------------------------------------------------------------------

    def join(self, *, timeout: float = 10.0, fail_fast: bool = True) -> None:
        """Wait until every queue is drained and every handler done, delayed messages and retries included.

        With ``fail_fast`` (the default), a message that failed for good in a step without a
        ``dead_letter_queue`` topic raises its handler's exception here: nothing in the flow
        handles it, so it is most likely a bug. Failures that go to a dead-letter topic are
        part of the flow; see :attr:`dead_letters`. Raises ``TimeoutError`` after ``timeout``
        seconds (of real time) naming the queues still busy.
        """
        deadline = time.monotonic() + timeout
        broker = self.broker
        while True:
            taken = broker.taken
            for queue in list(broker.queues.values()):
                _wait_done(queue, deadline, self._busy)
            if broker.taken != taken or any(q.unfinished_tasks for q in broker.queues.values()):
                continue  # a handler enqueued more while we waited on other queues: go round again
            if self.state.pending_outbox(limit=1):
                # A write committed state triggers (or a transaction staged messages) that are still
                # being published (from an async handler, off its loop): they are messages to wait for too.
                if time.monotonic() > deadline:
                    raise TimeoutError("the flow did not settle in time: state triggers or messages stay unpublished")
                time.sleep(0.001)
                continue
            if broker.taken != taken:
                # An outbox row was published (then deleted) since we looked at the queues: its
                # message is in a queue now, so go round again.
                continue
            due = broker.next_due()
            if due is None:
                break
            if not self._real_delays:
                broker.skip_to_next()
            elif broker.release_due() == 0:
                if time.monotonic() + due > deadline:
                    raise TimeoutError(f"a delayed message is due in {due:.1f}s, after the join's timeout")
                time.sleep(min(due, 0.05))
        if fail_fast:
            self._raise_unhandled_failure()

    def _busy(self) -> str:
        busy = [name for name, queue in self.broker.queues.items() if queue.unfinished_tasks]
        return f"queues still busy: {', '.join(busy) or 'none'}; delayed messages: {self.broker.next_due() is not None}"

    def _raise_unhandled_failure(self) -> None:
        dead = self.broker.dead_letters
        new, self._dead_seen = dead[self._dead_seen :], len(dead)
        for message in new:
            if self.runtime.settings[message.actor_name].dead_letter_queue:
                continue
            error = message._exception or RuntimeError(f"message {message.message_id} failed with no exception")
            raise error

    # -- what happened ---------------------------------------------------------------------

    @property
    def dead_letters(self) -> list[DeadMessage]:
        """Every message that failed for good, with why (as ``python -m actors dlq`` shows them)."""
        records = self.runtime.failures
        return [
            DeadMessage.of(proxy.actor_name, proxy, records.get(proxy.message_id)) for proxy in self.broker.dead_letters
        ]

    def dead_letters_of(self, step_name: str) -> list[DeadMessage]:
        """:attr:`dead_letters` of one step."""
        return [dead for dead in self.dead_letters if dead.step == step_name]

    @property
    def sent(self) -> list[SentMessage]:
        """Every message the broker took, in order: from handlers, retries, state triggers, cron fires."""
        return list(self.broker.sent)

    def sent_to(self, step_name: str) -> list[SentMessage]:
        """:attr:`sent` to one step."""
        return [message for message in self.broker.sent if message.step == step_name]

    @property
    def refused(self) -> list[SentMessage]:
        """Every message :meth:`refusing` made the broker refuse, in order."""
        return list(self.broker.refused)

    @property
    def logs(self) -> list[LogLine]:
        """Every line Conveyor's loggers (steps' ``ctx.logger`` included) wrote so far."""
        return list(self._logs.lines)

    def trace(self, trace_id: str) -> TraceDetail:
        """Trace ``trace_id`` as the console shows it: its spans and their log lines, written out first.

        Call it after :meth:`join`. Raises ``LookupError`` if nothing of that trace was recorded.
        """
        if self.runtime.recorder is not None:
            self.runtime.recorder.flush()
        store = self.runtime.traces()
        if store is None:
            raise RuntimeError("tracing is off ([tracing] enabled = false)")
        detail = store.trace(trace_id)
        if detail is None:
            raise LookupError(f"no trace {trace_id!r} was recorded")
        return detail

    @property
    def skipped_time(self) -> float:
        """Seconds of delays and backoff that :meth:`join` skipped instead of waiting."""
        return self.broker.skipped

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FlowEnvironment:
        """Start the in-process worker and the HTTP client (``with`` does it)."""
        self._capture.__enter__()
        self._worker = dramatiq.Worker(self.broker, worker_threads=self._worker_threads, worker_timeout=50)
        self._worker.start()
        self._client = TestClient(build_app(self.runtime))
        self._client.__enter__()
        return self

    def close(self) -> None:
        """Stop the worker, close the client and remove the temp dir."""
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None
        if self._worker is not None:
            self._worker.stop(timeout=5_000)
            self._worker = None
            self._capture.__exit__(None, None, None)
        self.runtime.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FlowEnvironment:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _wait_done(queue: Any, deadline: float, busy: Any) -> None:
    # Queue.join() with a deadline: wait on the queue's own condition until nothing is unfinished.
    with queue.all_tasks_done:
        while queue.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the flow did not settle in time; {busy()}")
            queue.all_tasks_done.wait(min(remaining, 0.1))


def _read_config(config: str | Path | None) -> tuple[dict[str, Any], str]:
    if config is None:
        return {}, "the test's settings"
    path = Path(config)
    try:
        return tomllib.loads(path.read_text()), f"{path} with the test's settings"
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _test_config(base: Path, raw: dict[str, Any], source: str, settings: str, flows: Sequence[str]) -> Config:
    try:
        _merge(raw, tomllib.loads(settings))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the test's settings are not valid TOML: {exc}") from None
    raw.setdefault("broker", {})["kind"] = "memory"
    raw.setdefault("state", {})["path"] = str(base / "state.db")
    raw.setdefault("project", {})["flows"] = list(flows)
    raw["root"] = str(base)
    return parse_config(raw, source=source)


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
