"""Workers stop on every ordinary signal pattern, and the run command's processes never outlive it.

Real RabbitMQ (a vhost of this module's own on the suite's node) and real processes, found
through ``/proc``. The limits are the ones docs/production.md promises.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conveyor.config import load_config
from conveyor.runtime import Runtime, build_runtime
from devtools.localnode import LocalNode
from devtools.processes import command_line, descendants, living, process_group, purge, queue_counts, wait_for
from tests.flow_support import own_vhost
from tests.helpers import step_queue
from tests.system import System

pytestmark = pytest.mark.integration


#: Seconds the in-flight message's handler runs (SlowProbe sleeps this long).
SLOW = 1.0
#: docs/production.md: a worker process exits within about this long after its last handler ends.
STOP_OVERHEAD = 5.0
#: Seconds the processes of the run command take to go once it is killed.
ORPHAN_LIMIT = 10.0


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
            raise AssertionError(f"still alive {elapsed:.1f}s on: " + "; ".join(f"{p} {command_line(p)}" for p in left))
        time.sleep(0.05)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def broker_url(rabbitmq: LocalNode) -> Iterator[str]:
    """A vhost of this module's own: no other module's messages, none of ours left for them."""
    with own_vhost(rabbitmq, "shutdown") as url:
        yield url


class Site(System):
    """A :class:`~tests.system.System` on the test probes only, with a runtime to publish with."""

    def __init__(self, base: Path, broker_url: str, gateway_workers: int = 1) -> None:
        super().__init__(base, broker_url, flows=["tests.flows"], gateway_workers=gateway_workers)
        self._runtime: Runtime | None = None

    def publish(self, topic: str, data: dict[str, object]) -> None:
        if self._runtime is None:
            self._runtime = build_runtime(load_config(self.config_path))
        self._runtime.publisher.publish(topic, data)

    def consumers(self, step: str) -> int:
        """How many consumers RabbitMQ has on ``step``'s queue."""
        return queue_counts(self.broker_url, step_queue(step))[1]

    def ready(self, step: str) -> int:
        """How many messages wait in ``step``'s queue (delivered, unacknowledged ones do not count)."""
        return queue_counts(self.broker_url, step_queue(step))[0]

    def close(self) -> None:
        for process in self.processes.running.values():
            kill_group(process.pid)  # its group, even when the leader is gone
        self.stop_all()
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
        pids = process_group(master.pid)
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
    # The second signal comes 1 s after the first, while the 3 s handler still runs.
    "group-SIGTERM-twice": Pattern(group_signal(signal.SIGTERM, times=2), "redelivered", sleep=3.0),
    "ctrl-c": Pattern(group_signal(signal.SIGINT), "completed"),
    "systemd": Pattern(systemd_stop(SLOW + STOP_OVERHEAD + 5, expect_kill=False), "completed"),
    "systemd-timeout": Pattern(systemd_stop(1.0, expect_kill=True), "redelivered", sleep=3.0),
    # A handler longer than the shutdown timeout is abandoned, and its message returned.
    "shutdown-timeout": Pattern(
        master_signal(signal.SIGTERM), "redelivered", sleep=5.0, args=("--worker-shutdown-timeout", "1000")
    ),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_workers_stop_on_signal_pattern(site: Site, pattern: str) -> None:
    case = PATTERNS[pattern]
    master = site.start_workers(processes=2, threads=2, args=case.args)
    workers = process_group(master.pid)
    assert len(workers) == 3, [command_line(pid) for pid in workers]  # the master and its two worker processes
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
    assert site.state.get("quick", quick) is None and site.ready("QuickProbe") == 1
    done = site.state.get("slow-done", probe)
    if case.outcome == "completed":
        assert done is not None and done["pid"] in workers, done
        assert len(site.state.get("slow-started", probe)) == 1
        purge(site.broker_url, [step_queue("QuickProbe")])
        return

    # Given back: delivered again to the next workers, as a redelivery, not as a failed attempt.
    assert done is None
    again = site.start_workers(processes=1, name="workers-again")
    wait_for(lambda: site.state.get("quick", quick), timeout=10)
    done = wait_for(lambda: site.state.get("slow-done", probe), timeout=case.sleep + 10)
    runs = site.state.get("slow-started", probe)
    assert done["pid"] in process_group(again.pid) and len(runs) == 2 and done["attempt"] == 1, (runs, done)
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
    return {child for child in descendants(pid) if "multiprocessing.spawn" in command_line(child)}


def _complete(tree: set[int]) -> bool:
    commands = [command_line(pid) for pid in tree]
    return (
        sum("dramatiq actors" in command for command in commands) == 3
        and sum("-m gateway" in command for command in commands) == 1
        and sum("-m scheduler" in command for command in commands) == 1
        and sum("multiprocessing.spawn" in command for command in commands) >= 2
    )
