"""Helpers for the operator-tool tests: a runtime in the test process on a System's config, and clean queues."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pika.exceptions

from conveyor.config import load_config
from conveyor.declare.flows import load_flows
from conveyor.runtime import Runtime
from conveyor.worker.failures import GROUP as RECORDS
from tests.system import ROOT, System


def with_management_url(system: System, management_url: str) -> None:
    """Point the System's config at the test node's management API (before its processes start)."""
    text = system.config_path.read_text()
    system.config_path.write_text(text.replace("[broker]\n", f'[broker]\nmanagement_url = "{management_url}"\n', 1))


@contextmanager
def runtime_for(system: System) -> Iterator[Runtime]:
    """A runtime in the test process on the System's config, with the test flows' steps only.

    Only the test flows' steps: the operator-tool tests need none of the shipped flows.
    """
    config = load_config(system.config_path)
    runtime = Runtime(config, load_flows(["tests.flows"]))
    try:
        yield runtime
    finally:
        runtime.close()


def stop(system: System) -> None:
    """Stop the System, the workers gracefully and quickly.

    SIGTERM goes to dramatiq's main process alone, which stops its workers once; signalling
    the whole process group (as System.stop does) signals each worker twice, and a worker
    signalled twice exits its main thread only, waiting out System.stop's 20 s timeout.
    """
    workers = system.processes.get("workers")
    if workers is not None and workers.poll() is None:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(15)
        except subprocess.TimeoutExpired:
            pass
    system.stop_all()


def empty_queues(broker_url: str, *steps: str, delays_ms: tuple[int, ...] = ()) -> None:
    """Purge each step's queue, delay queues (``.DQ`` and ``.delay.<N>ms`` for each of ``delays_ms``)
    and dead-letter queue, those that exist."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for step in steps:
            for queue in (step, f"{step}.DQ", f"{step}.XQ", *(f"{step}.delay.{ms}ms" for ms in delays_ms)):
                try:
                    channel.queue_purge(queue)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()  # no such queue yet
    finally:
        connection.close()


def queue_depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


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
