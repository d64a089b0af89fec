"""Workers stop on every ordinary signal pattern, and the run command's processes never outlive it.

Real RabbitMQ (a vhost of this module's own on the suite's node) and real processes, found
through ``/proc``. The limits are the ones docs/production.md promises.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pika
import pytest

from conveyor import StateStore
from conveyor.config import load_config
from conveyor.runtime import Runtime, build_runtime
from devtools.localnode import LocalNode
from tests.system import free_port, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
VHOST = "shutdown-tests"

#: Seconds the in-flight message's handler runs (SlowProbe sleeps this long).
SLOW = 2.0
#: docs/production.md: a worker process exits within about this long after its last handler ends.
STOP_OVERHEAD = 5.0
#: Seconds the processes of the run command take to go once it is killed.
ORPHAN_LIMIT = 10.0


# -- processes, from /proc ---------------------------------------------------------------------


def stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent pid, process group)`` of ``pid``, or None if there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def all_stats() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) is not None:
            found[int(entry.name)] = info
    return found


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``."""
    stats = all_stats()
    found: set[int] = set()
    parents = {pid}
    while parents:
        parents = {child for child, (state, ppid, _) in stats.items() if ppid in parents and state != "Z"} - found
        found |= parents
    return found


def group(pgid: int) -> set[int]:
    """Every living process of process group ``pgid``."""
    return {pid for pid, (state, _, pgrp) in all_stats().items() if pgrp == pgid and state != "Z"}


def living(pids: set[int]) -> set[int]:
    return {pid for pid in pids if (info := stat(pid)) is not None and info[0] != "Z"}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def wait_gone(pids: set[int], limit: float, since: float, reap: list[subprocess.Popen[bytes]]) -> float:
    """Wait until none of ``pids`` lives; the seconds it took from ``since``. Fails after ``limit``."""
    while True:
        for process in reap:
            process.poll()  # our own children would stay zombies otherwise
        left = living(pids)
        elapsed = time.monotonic() - since
        if not left:
            return elapsed
        if elapsed > limit:
            raise AssertionError(f"still alive {elapsed:.1f}s on: " + "; ".join(f"{p} {cmdline(p)}" for p in left))
        time.sleep(0.05)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- a config, its state and its processes -------------------------------------------------------


@pytest.fixture(scope="module")
def broker_url(rabbitmq: LocalNode) -> Iterator[str]:
    """A vhost of this module's own: no other module's messages, none of ours left for them."""
    for args in (("add_vhost", VHOST), ("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")):
        result = rabbitmq.ctl(*args)
        assert result.returncode == 0, result.stderr
    yield f"amqp://guest:guest@127.0.0.1:{rabbitmq.port}/{quote(VHOST, safe='')}"
    rabbitmq.ctl("delete_vhost", VHOST)


class Site:
    """A config file, its state store, a runtime to publish with, and the processes started on it."""

    def __init__(self, base: Path, broker_url: str, gateway_workers: int = 1) -> None:
        self.base = base
        self.port = free_port()
        self.config_path = base / "config.toml"
        self.config_path.write_text(
            f"""
[project]
flows = ["tests.flows"]
[broker]
url = "{broker_url}"
heartbeat = 10
[gateway]
port = {self.port}
workers = {gateway_workers}
[state]
path = "{base / "state.db"}"
[logging]
level = "INFO"
"""
        )
        self.env = {**os.environ, "CONVEYOR_CONFIG": str(self.config_path), "PYTHONUNBUFFERED": "1"}
        self.state = StateStore(base / "state.db")
        self.broker_url = broker_url
        self.processes: list[subprocess.Popen[bytes]] = []
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = build_runtime(load_config(self.config_path))
        return self._runtime

    def publish(self, topic: str, data: dict[str, object]) -> None:
        self.runtime.publisher.publish(topic, data)

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, as a terminal's job or a systemd unit
        )
        log.close()
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_workers(
        self, name: str, processes: int = 2, threads: int = 2, args: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        master = self.start(name, "-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads), *args)
        wait_for(lambda: self.log(name).count("ready for action") >= processes, timeout=30)
        return master

    def _queue(self, queue: str) -> tuple[int, int]:
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
        try:
            method = connection.channel().queue_declare(queue, passive=True).method
            return method.message_count, method.consumer_count
        finally:
            connection.close()

    def consumers(self, queue: str) -> int:
        """How many consumers RabbitMQ has on ``queue``."""
        return self._queue(queue)[1]

    def ready(self, queue: str) -> int:
        """How many messages wait in ``queue`` (delivered, unacknowledged ones do not count)."""
        return self._queue(queue)[0]

    def close(self) -> None:
        for process in self.processes:
            kill_group(process.pid)  # its group, even when the leader is gone
            process.wait(10)
        if self._runtime is not None:
            self._runtime.close()


@pytest.fixture
def site(tmp_path: Path, broker_url: str) -> Iterator[Site]:
    running = Site(tmp_path, broker_url)
    yield running
    running.close()


# -- the signal patterns -------------------------------------------------------------------------

#: Sends a signal pattern to a ``dramatiq`` master and its group.
Signaller = Callable[[subprocess.Popen[bytes]], None]


def master_signal(sig: int) -> Signaller:
    def send(master: subprocess.Popen[bytes]) -> None:
        os.kill(master.pid, sig)

    return send


def group_signal(sig: int, times: int = 1) -> Signaller:
    def send(master: subprocess.Popen[bytes]) -> None:
        for n in range(times):
            if n:
                time.sleep(1.0)
            os.killpg(master.pid, sig)

    return send


def systemd_stop(timeout_stop_sec: float, *, expect_kill: bool) -> Signaller:
    """KillMode=control-group: SIGTERM to every process, SIGKILL to what is left after TimeoutStopSec."""

    def send(master: subprocess.Popen[bytes]) -> None:
        pids = group(master.pid)
        os.killpg(master.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_stop_sec
        while living(pids) and time.monotonic() < deadline:
            master.poll()
            time.sleep(0.05)
        left = living(pids)
        assert bool(left) == expect_kill, f"left at TimeoutStopSec: {left}"
        kill_group(master.pid)

    return send


@dataclass
class Pattern:
    send: Signaller
    #: "completed" by the workers that were stopped, or "redelivered" to the next ones
    outcome: str
    #: seconds the in-flight message's handler runs
    sleep: float = SLOW
    #: more arguments for ``dramatiq actors``
    args: tuple[str, ...] = ()


PATTERNS = {
    "master-SIGTERM": Pattern(master_signal(signal.SIGTERM), "completed"),
    "master-SIGINT": Pattern(master_signal(signal.SIGINT), "completed"),
    "master-SIGKILL": Pattern(master_signal(signal.SIGKILL), "completed"),  # the kernel sends its workers SIGTERM
    "group-SIGTERM": Pattern(group_signal(signal.SIGTERM), "completed"),
    "group-SIGTERM-twice": Pattern(group_signal(signal.SIGTERM, times=2), "redelivered"),
    "ctrl-c": Pattern(group_signal(signal.SIGINT), "completed"),
    "systemd": Pattern(systemd_stop(SLOW + STOP_OVERHEAD + 5, expect_kill=False), "completed"),
    "systemd-timeout": Pattern(systemd_stop(1.0, expect_kill=True), "redelivered"),
    # A handler longer than the shutdown timeout is abandoned, and its message returned.
    "shutdown-timeout": Pattern(
        master_signal(signal.SIGTERM), "redelivered", sleep=5.0, args=("--worker-shutdown-timeout", "1000")
    ),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_workers_stop_on_signal_pattern(site: Site, pattern: str) -> None:
    case = PATTERNS[pattern]
    master = site.start_workers("workers", args=case.args)
    workers = group(master.pid)
    assert len(workers) == 3, [cmdline(pid) for pid in workers]  # the master and its two worker processes
    probe = uuid.uuid4().hex
    site.publish("test.slow", {"id": probe, "sleep": case.sleep})
    wait_for(lambda: site.state.get("slow-started", probe), timeout=10)

    started = time.monotonic()
    case.send(master)
    limit = min(case.sleep, _shutdown_timeout(case.args)) + STOP_OVERHEAD
    took = wait_gone(workers, limit, started, [master])
    print(f"\n{pattern}: every process gone {took:.2f}s after the first signal ({case.outcome})")

    # Nothing consumes any more: a message sent now waits for new workers.
    wait_for(lambda: site.consumers("SlowProbe") == 0 and site.consumers("QuickProbe") == 0, timeout=5)
    quick = uuid.uuid4().hex
    site.publish("test.quick", {"id": quick})
    time.sleep(0.5)
    assert site.state.get("quick", quick) is None
    done = site.state.get("slow-done", probe)
    assert (done is not None) == (case.outcome == "completed"), done

    again = site.start_workers("workers-again", processes=1)
    wait_for(lambda: site.state.get("quick", quick), timeout=10)
    done = wait_for(lambda: site.state.get("slow-done", probe), timeout=case.sleep + 10)
    runs = site.state.get("slow-started", probe)
    if case.outcome == "completed":
        assert done["pid"] in workers and len(runs) == 1, runs
    else:
        # Delivered again to the new workers, as a redelivery, not as a failed attempt.
        assert done["pid"] in group(again.pid) and len(runs) == 2 and done["attempt"] == 1, (runs, done)

    # Both handled and their acks sent a few milliseconds later: no need for a graceful stop here.
    wait_for(lambda: site.ready("SlowProbe") == 0 and site.ready("QuickProbe") == 0, timeout=5)
    time.sleep(0.3)
    kill_group(again.pid)


def _shutdown_timeout(args: tuple[str, ...]) -> float:
    """``--worker-shutdown-timeout`` in seconds (Dramatiq's default: 600)."""
    if "--worker-shutdown-timeout" in args:
        return int(args[args.index("--worker-shutdown-timeout") + 1]) / 1000
    return 600.0


# -- the run command's processes -----------------------------------------------------------------


@pytest.mark.parametrize("kill", ["launcher", "launcher-group"])
def test_run_command_processes_go_when_it_is_killed(tmp_path: Path, broker_url: str, kill: str) -> None:
    site = Site(tmp_path, broker_url, gateway_workers=2)
    launcher = site.start("launcher", "-m", "devtools.launcher", "--processes", "2", "--threads", "2")
    tree: set[int] = set()
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{site.port}", timeout=2)
        wait_for(lambda: site.log("launcher").count("ready for action") >= 2, timeout=30)
        wait_for(lambda: _answers(http), timeout=30)
        http.close()
        # The dramatiq master with two workers, the gateway's master with two, the scheduler.
        tree = wait_for(lambda: (found := descendants(launcher.pid)) and _complete(found) and found, timeout=30)

        started = time.monotonic()
        if kill == "launcher":
            os.kill(launcher.pid, signal.SIGKILL)
        else:
            os.killpg(launcher.pid, signal.SIGKILL)
        took = wait_gone(tree | {launcher.pid}, ORPHAN_LIMIT, started, [launcher])
        print(f"\n{kill} SIGKILL: {len(tree)} processes gone {took:.2f}s after it")
    finally:
        # Its programs run in sessions of their own: a failed test must not leave them running.
        for pid in living(tree | descendants(launcher.pid)):
            os.kill(pid, signal.SIGKILL)
        site.close()


def test_gateway_workers_go_when_its_master_is_killed(tmp_path: Path, broker_url: str) -> None:
    site = Site(tmp_path, broker_url, gateway_workers=2)
    try:
        master = site.start("gateway", "-m", "gateway")
        http = httpx.Client(base_url=f"http://127.0.0.1:{site.port}", timeout=2)
        wait_for(lambda: _answers(http), timeout=30)
        http.close()
        workers = wait_for(lambda: len(found := _uvicorn_workers(master.pid)) >= 2 and found, timeout=30)

        started = time.monotonic()
        master.kill()
        took = wait_gone(workers, ORPHAN_LIMIT, started, [master])
        print(f"\ngateway master SIGKILL: its workers gone {took:.2f}s after it")
    finally:
        site.close()


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/health").status_code in (200, 503)
    except httpx.TransportError:
        return False


def _uvicorn_workers(pid: int) -> set[int]:
    return {child for child in descendants(pid) if "multiprocessing.spawn" in cmdline(child)}


def _complete(tree: set[int]) -> bool:
    commands = [cmdline(pid) for pid in tree]
    return (
        sum("dramatiq actors" in command for command in commands) == 3
        and sum("-m gateway" in command for command in commands) == 1
        and sum("-m scheduler" in command for command in commands) == 1
        and sum("multiprocessing.spawn" in command for command in commands) >= 2
    )
