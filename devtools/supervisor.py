"""Run the system's processes and bring back any that die.

``dramatiq``'s master stops every worker process when one of them dies, so a crashed worker
takes the whole ``dramatiq actors`` command down; the supervisor starts it again (with a
short backoff), as a systemd unit with ``Restart=always`` would.

The programs go when the supervisor goes: each gets ``SIGTERM`` from the kernel when the
supervisor dies, even by ``SIGKILL`` (Linux; see :mod:`conveyor.lifecycle`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from conveyor.lifecycle import exit_with_parent, parent_death_signal_available

logger = logging.getLogger("conveyor.supervisor")

#: Seconds the programs get to stop on SIGTERM before the supervisor kills what is left of them.
STOP_GRACE = 15.0


@dataclass
class Program:
    """One supervised command."""

    name: str
    argv: list[str]
    #: On a restart, start the new process at once and let the old one finish its work beside it
    #: (workers: their in-flight messages), instead of waiting for it to exit (a port, a schedule).
    overlap: bool = False
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        logger.info("Starting %s: %s", self.name, " ".join(self.argv))
        # Its own process group, so a Ctrl-C at the terminal reaches it once, through us (a second
        # signal stops dramatiq's workers at once), and a group kill cleans up what it leaves.
        self.process = subprocess.Popen(self.argv, start_new_session=True, preexec_fn=_follow(os.getpid()))
        self.started_at = time.monotonic()


class Supervisor:
    """Start programs, restart those that exit, stop all of them on SIGINT/SIGTERM."""

    def __init__(self, programs: list[Program], *, max_backoff: float = 10.0) -> None:
        self.programs = programs
        self.max_backoff = max_backoff
        self.stopping = False
        self._restart = threading.Event()
        #: Processes a restart replaced, finishing their work: (process, when they must be gone).
        self._draining: list[tuple[subprocess.Popen[bytes], float]] = []

    def request_restart(self) -> None:
        """Restart every program soon (the development loop calls this from its own thread).

        The restart itself runs in the supervisor's thread: the programs' death signal is tied
        to the thread that started them.
        """
        self._restart.set()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for program in self.programs:
            program.start()
        while not self.stopping:
            if self._restart.is_set():
                self._restart.clear()
                self._restart_all()
            self._reap_draining()
            for program in self.programs:
                assert program.process is not None
                code = program.process.poll()
                if code is None or self.stopping:
                    continue
                # A program that ran for a while gets a fresh backoff; a crash loop slows down.
                if time.monotonic() - program.started_at > 30:
                    program.restarts = 0
                delay = min(2**program.restarts * 0.5, self.max_backoff)
                program.restarts += 1
                logger.warning("%s exited with %s; restarting in %.1fs", program.name, code, delay)
                time.sleep(delay)
                if not self.stopping:
                    program.start()
            time.sleep(0.2)
        self._terminate_all()

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _restart_all(self) -> None:
        started = time.monotonic()
        waiting = []
        for program in self.programs:
            old = program.process
            if old is not None and old.poll() is None:
                old.terminate()
                if program.overlap:
                    self._draining.append((old, started + STOP_GRACE))
                else:
                    waiting.append((program, old))
            if program.overlap:
                program.start()
        for program, old in waiting:
            try:
                old.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs; killing it", program.name, STOP_GRACE)
            _kill_group(old.pid)
        for program in self.programs:
            if not program.overlap:
                program.start()
            program.restarts = 0
        logger.info("Restarted %s in %.1fs", ", ".join(p.name for p in self.programs), time.monotonic() - started)

    def _reap_draining(self) -> None:
        still = []
        for process, deadline in self._draining:
            if process.poll() is not None:
                _kill_group(process.pid)  # whatever of its group is left
            elif time.monotonic() > deadline:
                logger.warning("A replaced process (%d) did not stop within %.0fs; killing it", process.pid, STOP_GRACE)
                _kill_group(process.pid)
            else:
                still.append((process, deadline))
        self._draining = still

    def _terminate_all(self) -> None:
        running = [program.process for program in self.programs if program.process is not None]
        for process in running:
            # The program alone: dramatiq's master passes the signal on; a second one would mean "now".
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process in running + [old for old, _ in self._draining]:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("Process %d did not stop within %.0fs; killing it", process.pid, STOP_GRACE)
            _kill_group(process.pid)  # whatever of its group is left
        self._draining = []


def _follow(supervisor: int) -> Callable[[], None] | None:
    """The ``preexec_fn`` that has a program get SIGTERM when the supervisor dies, where Linux can."""
    if not parent_death_signal_available():
        logger.debug("Programs will outlive a killed supervisor on this platform")
        return None

    def follow() -> None:
        # Runs in the child between fork and exec: the death signal survives the exec.
        if not exit_with_parent(supervisor):
            raise ChildProcessError("the supervisor died before its program started")

    return follow


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
