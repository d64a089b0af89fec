"""Start Conveyor's real processes (gateway, dramatiq workers, scheduler) for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from conveyor import StateStore

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


class System:
    """A config file, a state store, and the processes that run against them."""

    def __init__(self, base: Path, broker_url: str, extra_config: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.config_path = base / "config.toml"
        self.config_path.write_text(
            f"""
[project]
flows = ["flows", "tests.flows"]
[broker]
url = "{broker_url}"
heartbeat = 10
[gateway]
port = {self.port}
[state]
path = "{base / "state.db"}"
[logging]
level = "INFO"
{extra_config}
"""
        )
        self.env = {**os.environ, "CONVEYOR_CONFIG": str(self.config_path), "PYTHONUNBUFFERED": "1"}
        self.state = StateStore(base / "state.db")
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_workers(self, processes: int = 1, threads: int = 4) -> subprocess.Popen[bytes]:
        process = self.start("workers", "-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads))
        wait_for(lambda: b"ready for action" in self.log("workers").encode(), timeout=30)
        return process

    def start_gateway(self) -> subprocess.Popen[bytes]:
        process = self.start("gateway", "-m", "gateway")
        wait_for(self._gateway_up, timeout=30)
        return process

    def _gateway_up(self) -> bool:
        try:
            return self.http.get("/health").status_code in (200, 503)
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # The process only: dramatiq's master passes SIGTERM on to its workers, and a second
        # signal (from a group kill) makes them hang until killed.
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left
        except ProcessLookupError:
            pass
        process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.http.close()
