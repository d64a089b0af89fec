"""Conveyor's real processes (gateway, dramatiq workers, scheduler) for integration tests, on devtools' harness."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from conveyor import open_store
from devtools.processes import ROOT, Processes, free_port, wait_for, write_config

__all__ = ["ROOT", "System", "free_port", "wait_for"]


class System:
    """A config file, a state store, and the processes that run against them.

    The config loads the shipped flows and the test probes (``tests/flows``) unless ``flows`` says
    otherwise, with a 10 s heartbeat; the state is a SQLite file unless ``state_url`` names a
    PostgreSQL database.
    """

    def __init__(
        self,
        base: Path,
        broker_url: str,
        extra_config: str = "",
        *,
        flows: list[str] | None = None,
        gateway_workers: int = 1,
        state_url: str | None = None,
    ) -> None:
        self.base = base
        self.broker_url = broker_url
        self.port = free_port()
        self.config_path = write_config(
            base / "config.toml",
            broker_url=broker_url,
            gateway_port=self.port,
            state_path=base / "state.db",
            flows=["flows", "tests.flows"] if flows is None else flows,
            heartbeat=10,
            gateway_workers=gateway_workers,
            state_url=state_url,
            extra=extra_config,
        )
        self.processes = Processes(base, env={"CONVEYOR_CONFIG": str(self.config_path)})
        self.state = open_store(state_url or base / "state.db")
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    @property
    def env(self) -> dict[str, str]:
        return self.processes.env

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        return self.processes.start(name, *argv)

    def start_workers(
        self, processes: int = 1, threads: int = 4, *, name: str = "workers", args: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """``dramatiq actors -p N -t T ARGS``, returned once every worker process is ready."""
        argv = ("-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads), *args)
        process = self.start(name, *argv)
        self.wait_workers(name=name, processes=processes)
        return process

    def wait_workers(self, timeout: float = 60, *, name: str = "workers", processes: int = 1) -> None:
        wait_for(lambda: self.log(name).count("ready for action") >= processes, timeout, what=f"the {name}")

    def start_gateway(self) -> subprocess.Popen[bytes]:
        process = self.start("gateway", "-m", "gateway")
        self.wait_gateway()
        return process

    def wait_gateway(self, timeout: float = 60) -> None:
        wait_for(self._gateway_up, timeout, what="the gateway's /health")

    def _gateway_up(self) -> bool:
        try:
            return self.http.get("/health").status_code in (200, 503)
        except httpx.TransportError:
            return False

    def log(self, name: str) -> str:
        return self.processes.log(name)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal the process, wait for it (20 s at most), then kill whatever is left of its group."""
        self.processes.stop(name, sig, timeout=20)

    def stop_all(self) -> None:
        self.processes.stop_all(timeout=20)
        self.http.close()
