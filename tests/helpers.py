"""Unit-test helpers: a runtime on Dramatiq's StubBroker with a registry of the test's own steps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dramatiq

from conveyor import Registry
from conveyor.config import Config, load_config
from conveyor.runtime import Runtime


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


def drain(runtime: Runtime, *queues: str, timeout: int = 10_000) -> None:
    """Wait until every queue (and its delay queue) is empty and handled."""
    for _ in range(3):  # handlers enqueue to other queues: go round until all settle
        for name in queues or runtime.broker.get_declared_queues():
            runtime.broker.join(name, timeout=timeout, fail_fast=False)


def payloads(runtime: Runtime, queue: str) -> list[Any]:
    """Messages waiting in a StubBroker queue (when no worker runs)."""
    return [dramatiq.Message.decode(raw).args[0] for raw in list(runtime.broker.queues[queue].queue)]
