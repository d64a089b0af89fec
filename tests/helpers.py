"""Unit-test helpers: a runtime on Dramatiq's StubBroker with a registry of the test's own steps."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq

from conveyor import Registry
from conveyor.config import Config, load_config
from conveyor.declare.flows import load_flows
from conveyor.runtime import Runtime
from conveyor.worker.actors import queue_name


def memory_config(tmp_path: Path, toml: str = "") -> Config:
    path = tmp_path / "config.toml"
    path.write_text(f'[broker]\nkind = "memory"\n[state]\npath = "state.db"\n{toml}')
    return load_config(path)


def memory_runtime(tmp_path: Path, registry: Registry, toml: str = "") -> Runtime:
    runtime = Runtime(memory_config(tmp_path, toml), registry)
    runtime.check()
    return runtime


@contextmanager
def running_worker(runtime: Runtime) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(runtime.broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def drain(runtime: Runtime, *steps: str, timeout: int = 10_000) -> None:
    """Wait until the queue (and delay queue) of each of ``steps`` (default: every queue) is empty and handled."""
    queues = [runtime.actors[name].queue_name for name in steps]
    for _ in range(3):  # handlers enqueue to other queues: go round until all settle
        for name in queues or runtime.broker.get_declared_queues():
            runtime.broker.join(name, timeout=timeout, fail_fast=False)


def payloads(runtime: Runtime, step: str) -> list[Any]:
    """Messages waiting in a step's StubBroker queue (when no worker runs)."""
    queue = runtime.broker.queues[runtime.actors[step].queue_name]
    return [dramatiq.Message.decode(raw).args[0] for raw in list(queue.queue)]


@functools.cache
def _system_steps() -> Registry:
    return load_flows(["flows", "tests.flows"])


def step_queue(step: str, deployment: str = "conveyor") -> str:
    """The RabbitMQ queue of a shipped or test-probe step, in a System whose ``[project] name`` is ``deployment``."""
    return queue_name(_system_steps().get(step), deployment)
