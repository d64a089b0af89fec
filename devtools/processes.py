"""What the tests, the fault run and the benchmarks share to run Conveyor for real: config files,
processes with their logs, bounded waits, free ports and a look at RabbitMQ's queues.

Example::

    processes = Processes(base_dir, env={"CONVEYOR_CONFIG": str(write_config(base_dir / "config.toml", ...))})
    processes.start("workers", "-m", "dramatiq", "actors", "-p", "1", "-t", "4")
    wait_for(lambda: "ready for action" in processes.log("workers"), timeout=60, what="the workers")
    ...
    processes.stop_all()

Everything listens on 127.0.0.1, on free ports; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pika

#: The project's root: where the processes run (``python -m gateway`` finds the front doors there).
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

T = TypeVar("T")


#: Ports :func:`free_port` picks from: below Linux's ephemeral range (32768 and up), so that no
#: client connection the kernel numbers on its own can take a port between its pick and its use.
PORTS = range(20000, 30000)


def free_port() -> int:
    """A TCP port nothing listens on right now, on loopback, from :data:`PORTS`."""
    for _ in range(200):
        port = random.choice(PORTS)
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1} on {HOST}")


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, *, what: str | None = None, interval: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; after ``timeout``
    seconds, ``TimeoutError`` naming ``what`` (the predicate by default)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def write_config(
    path: Path,
    *,
    broker_url: str,
    gateway_port: int,
    state_path: Path,
    flows: list[str],
    heartbeat: int = 60,
    gateway_workers: int = 1,
    log_level: str = "INFO",
    state_url: str | None = None,
    extra: str = "",
) -> Path:
    """Write a config.toml for a system run by the tests, the fault run or a benchmark; returns ``path``.

    With ``state_url`` the state lives in that PostgreSQL database instead of the file at ``state_path``.
    """
    path.write_text(
        f"""# Written by devtools/processes.py.
[project]
flows = {json.dumps(flows)}
[broker]
url = "{broker_url}"
heartbeat = {heartbeat}
[gateway]
host = "{HOST}"
port = {gateway_port}
workers = {gateway_workers}
[state]
path = "{state_path}"
{f'url = "{state_url}"' if state_url else ""}
[logging]
level = "{log_level}"
{extra}
"""
    )
    return path


class Processes:
    """Python processes started in the project root, each in a session of its own, logging to ``<base>/<name>.log``.

    Parameters:
      base: where the logs go.
      env: the environment they get (``CONVEYOR_CONFIG`` and the like).
    """

    def __init__(self, base: Path, env: Mapping[str, str] | None = None) -> None:
        self.base = base
        self.env: dict[str, str] = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``python ARGV...``; its output, stdout and stderr, goes to its log."""
        if name in self.running and self.running[name].poll() is None:
            raise RuntimeError(f"process {name!r} is already running")
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: what is left of it can be killed at once
            )
        self.running[name] = process
        return process

    def check_alive(self, name: str) -> None:
        """Raise ``RuntimeError`` with the end of its log if process ``name`` has exited."""
        process = self.running[name]
        if process.poll() is not None:
            tail = "\n".join(self.log(name).splitlines()[-20:])
            raise RuntimeError(f"{name} exited with code {process.returncode}; its log ends with:\n{tail}")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Send ``sig`` to the process, wait up to ``timeout`` s, then SIGKILL whatever is left of its group.

        Returns its exit code (``None`` if it was not running).
        """
        process = self.running.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return process.wait(10)

    def stop_all(self, timeout: float = 30) -> None:
        """Stop every process (in the reverse order of their start)."""
        for name in reversed(list(self.running)):
            self.stop(name, timeout=timeout)

    def log_path(self, name: str) -> Path:
        return self.base / f"{name}.log"

    def log(self, name: str) -> str:
        """Everything process ``name`` wrote so far."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (e.g. the worker processes of a ``dramatiq`` master)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def _stats() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, process group)`` of every living (not zombie) process."""
    found: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``: its children, theirs, and so on."""
    stats = _stats()
    found: set[int] = set()
    parents = {pid}
    while parents:
        parents = {child for child, (parent, _) in stats.items() if parent in parents} - found
        found |= parents
    return found


def process_group(pgid: int) -> set[int]:
    """Every living process of process group ``pgid``."""
    return {pid for pid, (_, group) in _stats().items() if group == pgid}


def living(pids: set[int]) -> set[int]:
    """Those of ``pids`` still alive (zombies count as gone)."""
    alive = _stats()
    return {pid for pid in pids if pid in alive}


def command_line(pid: int) -> str:
    """The command line of ``pid``, or ``""`` if it is gone."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def queue_counts(url: str, queue: str) -> tuple[int, int]:
    """``(messages ready, consumers)`` of ``queue`` (a passive declare: unacknowledged messages are not counted)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return int(method.message_count), int(method.consumer_count)
    finally:
        connection.close()


def queue_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (a passive declare: unacknowledged ones are not counted)."""
    return queue_counts(url, queue)[0]


def purge(url: str, queues: list[str]) -> int:
    """Empty those of ``queues`` that exist; returns how many messages were dropped."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    dropped = 0
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                dropped += int(channel.queue_purge(queue).method.message_count)
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()  # no such queue: RabbitMQ closed the channel
    finally:
        connection.close()
    return dropped
