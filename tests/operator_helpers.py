"""Helpers for the operator-tool tests: a runtime in the test process on a System's config, and clean queues."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.config import load_config
from conveyor.declare.flows import load_flows
from conveyor.runtime import Runtime
from conveyor.worker.failures import GROUP as RECORDS
from devtools.processes import ROOT, purge, queue_depth
from tests.helpers import step_queue
from tests.system import System

__all__ = ["empty_queues", "forget_records", "queue_depth", "run_cli", "runtime_for", "stop", "with_management_url"]


def with_management_url(system: System, management_url: str) -> None:
    """Point the System's config at the test node's management API (before its processes start)."""
    text = system.config_path.read_text()
    system.config_path.write_text(text.replace("[broker]\n", f'[broker]\nmanagement_url = "{management_url}"\n', 1))


@contextmanager
def runtime_for(system: System) -> Iterator[Runtime]:
    """A runtime in the test process on the System's config, with the test flows' steps only.

    Only the test flows' steps: the operator-tool tests need none of the shipped flows.
    """
    runtime = Runtime(load_config(system.config_path), load_flows(["tests.flows"]))
    try:
        yield runtime
    finally:
        runtime.close()


def stop(system: System) -> None:
    """Stop the System's processes."""
    system.stop_all()


def empty_queues(broker_url: str, *steps: str, delays_ms: tuple[int, ...] = ()) -> None:
    """Purge each step's queue, delay queues (``.DQ`` and ``.delay.<N>ms`` for each of ``delays_ms``)
    and dead-letter queue, those that exist."""
    purge(
        broker_url,
        [
            q
            for step in map(step_queue, steps)
            for q in (step, f"{step}.DQ", f"{step}.XQ", *(f"{step}.delay.{ms:010d}ms" for ms in delays_ms))
        ],
    )


def forget_records(system: System) -> None:
    system.state.clear(RECORDS)


def run_cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m actors ARGS`` against the System's config."""
    return subprocess.run(
        [sys.executable, "-m", "actors", *args],
        cwd=ROOT,
        env=system.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
