"""Serve the gateway: one uvicorn process, or ``[gateway] workers`` independent ones on one port.

With several, a small parent process starts each gateway process (``multiprocessing``'s spawn:
a fresh interpreter that imports the app, and so boots its own runtime, RabbitMQ publisher and
state pool). Each binds a socket of its own with ``SO_REUSEPORT`` on the same address, and
the kernel spreads new connections over them evenly, where one shared accept queue hands most
of them to whichever process is least busy at that instant. The parent restarts a process that
dies, passes SIGTERM and SIGINT on for a graceful stop, and exits once they are gone::

    serve("gateway.asgi:app", host="127.0.0.1", port=3000, workers=4, log_level="info")

Each process answers ``GET /health`` with its pid in :data:`PID_HEADER`.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

logger = logging.getLogger("conveyor.gateway")

#: The ``GET /health`` answer header naming the process that served it.
PID_HEADER = "X-Gateway-Pid"
#: A random secret the parent of ``[gateway] workers > 1`` processes gives them all (in their
#: environment), so that a console form one process served is accepted by another.
SHARED_SECRET_ENV = "CONVEYOR_GATEWAY_SECRET"
#: Seconds the processes get to finish their requests after SIGTERM before they are killed
#: (less than the launcher's supervisor gives this parent).
STOP_GRACE = 10.0
#: A process that exits within this many seconds of its start is restarted after a pause that
#: doubles each time, up to :data:`MAX_BACKOFF`, rather than in a tight loop.
QUICK_EXIT = 5.0
MAX_BACKOFF = 10.0

_spawn = multiprocessing.get_context("spawn")


def serve(app: str, *, host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    """Serve the ASGI app named ``app`` (``module:attribute``) on ``host:port`` in ``workers`` processes.

    One worker is this very process, as plain ``uvicorn.run``; more are children of this one
    (see the module's docstring), and this process only watches them.
    """
    if workers <= 1:
        # log_config=None: uvicorn's lines go through the root logger, in Conveyor's format (setup_logging).
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, log_config=None)
        return
    if port == 0:
        raise SystemExit("conveyor: [gateway] workers > 1 needs a fixed port: port 0 would give each process its own")
    # Fail here, once, with a clear message, rather than in every child in turn.
    try:
        reuse_port_socket(host, port).close()
    except OSError as exc:
        raise SystemExit(f"conveyor: the gateway cannot listen on {host}:{port}: {exc.strerror}") from None
    GatewayProcesses(app, host=host, port=port, workers=workers, log_level=log_level).run()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, for one of several processes to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def run_one(app: str, host: str, port: int, log_level: str) -> None:
    """One gateway process of several: its own socket on the shared port, its own app and runtime."""
    sock = reuse_port_socket(host, port)
    # The app is imported here, by name, so that this process boots its own runtime.
    config = uvicorn.Config(app, log_level=log_level, access_log=False, log_config=None)
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class _Slot:
    """One of the N places a gateway process fills."""

    number: int
    process: BaseProcess | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    quick_exits: int = 0


class GatewayProcesses:
    """Keep ``workers`` gateway processes running until SIGTERM or SIGINT, then stop them.

    Parameters:
      app: the ASGI app by name (``"gateway.asgi:app"``), imported by each process.
      host, port: where every process listens (each on a socket of its own).
      workers: how many processes.
      log_level: uvicorn's log level in the processes.
    """

    def __init__(self, app: str, *, host: str, port: int, workers: int, log_level: str = "info") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.slots = [_Slot(number) for number in range(workers)]
        # Spawned processes inherit the environment: one secret for all, and for their replacements.
        os.environ.setdefault(SHARED_SECRET_ENV, secrets.token_hex(32))
        self.stopping = False
        self._signals = 0
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def run(self) -> None:
        """Start the processes, replace those that exit, and return once a signal stopped them all."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        logger.info("Starting %d gateway processes on %s:%d", len(self.slots), self.host, self.port)
        for slot in self.slots:
            self._start(slot)
        while not self.stopping:
            self._wait(self._next_wait())
            self._replace_exited()
        self._stop_all()

    # -- watching ------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        process = _spawn.Process(
            target=run_one,
            args=(self.app, self.host, self.port, self.log_level),
            name=f"gateway-{slot.number}",
        )
        process.start()
        slot.process, slot.started_at = process, time.monotonic()

    def _replace_exited(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and not process.is_alive():
                process.join()
                quick = now - slot.started_at < QUICK_EXIT
                slot.quick_exits = slot.quick_exits + 1 if quick else 0
                pause = min(MAX_BACKOFF, 0.5 * 2**slot.quick_exits) if quick else 0.0
                logger.warning(
                    "Gateway process %d (pid %s) exited with code %s; starting another%s",
                    slot.number,
                    process.pid,
                    process.exitcode,
                    f" in {pause:.1f}s" if pause else "",
                )
                slot.process, slot.restart_at = None, now + pause
            if slot.process is None and now >= slot.restart_at and not self.stopping:
                self._start(slot)

    def _next_wait(self) -> float:
        waiting = [slot.restart_at - time.monotonic() for slot in self.slots if slot.process is None]
        return max(0.0, min([1.0, *waiting]))

    def _wait(self, timeout: float) -> None:
        """Until a process exits, a signal comes, or ``timeout`` passes."""
        sentinels: list[int] = [slot.process.sentinel for slot in self.slots if slot.process is not None]
        ready = multiprocessing.connection.wait([*sentinels, self._wake_read], timeout)
        if self._wake_read in ready:
            os.read(self._wake_read, 512)

    # -- stopping ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self.stopping = True
        if self._signals > 1:
            # A second signal: uvicorn takes a second SIGINT as "stop now, requests or not".
            self._signal_all(signal.SIGINT)
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:
            pass  # already awake

    def _signal_all(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None and slot.process.is_alive():
                try:
                    os.kill(slot.process.pid, sig)
                except ProcessLookupError:
                    pass

    def _stop_all(self) -> None:
        logger.info("Stopping %d gateway processes", sum(slot.process is not None for slot in self.slots))
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for slot in self.slots:
            if slot.process is None:
                continue
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                logger.warning("Gateway process %d did not stop within %.0fs; killing it", slot.number, STOP_GRACE)
                slot.process.kill()
                slot.process.join(5)
        os.close(self._wake_read)
        os.close(self._wake_write)
