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

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for program in self.programs:
            program.start()
        while not self.stopping:
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

    def _terminate_all(self) -> None:
        for program in self.programs:
            # The program alone: dramatiq's master passes the signal on; a second one would mean "now".
            if program.process and program.process.poll() is None:
                program.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for program in self.programs:
            if program.process is None:
                continue
            try:
                program.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0fs; killing it", program.name, STOP_GRACE)
            _signal_group(program, signal.SIGKILL)  # whatever of the group is left


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


def _signal_group(program: Program, sig: int) -> None:
    if program.process is None:
        return
    try:
        os.killpg(program.process.pid, sig)
    except ProcessLookupError:
        pass
