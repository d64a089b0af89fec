"""What every benchmark shares: its own RabbitMQ node, config file, state db and processes.

Example::

    with Harness("pipeline") as bench:
        bench.write_config(flows=["flows.orders"])
        bench.start_workers("workers", "actors", processes=2, threads=8)
        url = bench.start_gateway()
        ...
    # processes stopped, node stopped, temp dir removed

Everything listens on 127.0.0.1, on free ports, under a temp dir; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import httpx

from conveyor.messaging.broker import with_heartbeat
from devtools import processes
from devtools.localnode import LocalNode, free_node_ports, rabbitmq_installed
from devtools.processes import HOST, ROOT, Processes, children, free_port, purge, queue_depth  # noqa: F401 - re-exported

from .errors import BenchError
from .procfs import cpu_busy, cpu_seconds, machine, pss_mb, rss_mb, tree_cpu  # noqa: F401 - re-exported

#: The heartbeat written to the config; the plain Dramatiq broker gets the same URL.
HEARTBEAT = 60
#: The queues' x-max-priority (Conveyor's default); the plain Dramatiq broker gets the same.
MAX_PRIORITY = 10
#: The flows the order benchmarks load: the order-processing flow alone, so that other flows
#: added to the project do not change what they measure (``--flows flows`` loads all).
FLOWS = ["flows.orders"]

T = TypeVar("T")


def note(text: str) -> None:
    """Progress on stderr, so that stdout holds only the JSON line and the summary."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def emit(figures: dict[str, Any], summary: str) -> None:
    """Print the one JSON line of figures, then the human summary."""
    print(json.dumps(figures, sort_keys=False), flush=True)
    print(summary, flush=True)


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """:func:`devtools.processes.wait_for`, failing with :class:`BenchError`."""
    try:
        return processes.wait_for(predicate, timeout=timeout, what=what, interval=interval)
    except TimeoutError as exc:
        raise BenchError(str(exc)) from None


def argument_parser(module: str, doc: str | None, *, flows: bool = True) -> argparse.ArgumentParser:
    """The parser every benchmark starts from: ``--keep`` and, for those that load flows, ``--flows``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, state db, counters)")
    if flows:
        parser.add_argument(
            "--flows",
            nargs="+",
            default=FLOWS,
            help=f"[project] flows for the workers and the gateway (default {' '.join(FLOWS)})",
        )
    return parser


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of ``values`` by nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class Harness:
    """A temp dir with a RabbitMQ node, a config file, a state db and the processes of one benchmark.

    Parameters:
      name: names the temp dir and the node.
      keep: leave the temp dir (logs, state db) in place at the end.
    """

    def __init__(self, name: str, *, keep: bool = False) -> None:
        self.name = name
        self.keep = keep
        #: How busy the CPUs were just before the benchmark began, for :func:`machine`.
        self.busy_before = cpu_busy()
        self.base = Path(tempfile.mkdtemp(prefix=f"conveyor-bench-{name}-"))
        self.node: LocalNode | None = None
        self.config_path = self.base / "config.toml"
        self.state_path = self.base / "state.db"
        self.gateway_port = free_port()
        self.processes = Processes(self.base)
        self._previous_sigterm: Any = None
        #: The nodes the configs written from now on name (None: :attr:`node`), and their extra ``[broker]`` keys.
        self._broker_nodes: list[LocalNode] | None = None
        self._broker_settings: dict[str, str | int] = {}

    # -- life cycle ----------------------------------------------------------------------------

    def __enter__(self) -> Harness:
        # A SIGTERM (or Ctrl-C) still stops the node and the processes.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self.start_node()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def start_node(self, attempts: int = 2) -> LocalNode:
        """Start the benchmark's RabbitMQ node on free ports (again on other ports if it fails to start)."""
        if not rabbitmq_installed():
            raise BenchError("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        for attempt in range(1, attempts + 1):
            port, management_port = free_node_ports()
            node = LocalNode(self.base / f"rabbitmq-{port}", port=port, management_port=management_port, name="bench")
            self.node = node
            note(f"starting RabbitMQ node {node.nodename} under {node.base}")
            try:
                with _loopback_erlang_distribution():
                    node.start()
                return node
            except (subprocess.SubprocessError, RuntimeError) as exc:
                tail = _tail(node.base / "server.out", 15)
                note(f"RabbitMQ node {node.nodename} did not start ({exc}); its output ends with:\n{tail}")
                self._stop_node()
                if attempt == attempts:
                    raise BenchError(f"RabbitMQ node did not start after {attempts} attempts; see above") from None
        raise AssertionError("unreachable")

    def _stop_node(self) -> None:
        if self.node is None:
            return
        note(f"stopping RabbitMQ node {self.node.nodename}")
        pid = self.node_pid()
        try:
            self.node.stop()
        except (OSError, subprocess.SubprocessError) as exc:
            note(f"could not stop the node cleanly: {exc}")
        if pid is not None and _alive(pid):
            # A node that never finished starting does not answer rabbitmqctl: end the VM by its pid.
            try:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not _alive(pid), timeout=30, what=f"RabbitMQ process {pid} to exit", interval=0.2)
            except (OSError, BenchError) as exc:
                note(f"RabbitMQ process {pid} may still run: {exc}")
        self.node = None

    def close(self) -> None:
        """Stop every process, then the node, then remove the temp dir (unless ``keep``)."""
        for name in list(self.processes.running):
            self.stop(name)
        self._stop_node()
        if self.keep:
            note(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def node_pid(self) -> int | None:
        """The RabbitMQ node's OS process id (from its pid file), if it is running."""
        return None if self.node is None else rabbitmq_pid(self.node)

    # -- config --------------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        """The node's AMQP URL with the heartbeat Conveyor adds, so plain Dramatiq gets the same one."""
        if self.node is None:
            raise BenchError("the node is not started")
        return with_heartbeat(self.node.url, HEARTBEAT)

    def use_broker(self, nodes: list[LocalNode] | None = None, **settings: str | int) -> None:
        """Have the configs written from now on name ``nodes`` (a cluster; default: the harness's own node).

        ``settings`` are more ``[broker]`` keys, such as ``queue_type="quorum"``. Example::

            bench.use_broker(cluster.nodes, queue_type="quorum")
        """
        self._broker_nodes = list(nodes) if nodes else None
        self._broker_settings = dict(settings)

    @property
    def broker_nodes(self) -> list[LocalNode]:
        """The RabbitMQ nodes the benchmark's processes use (:meth:`use_broker`), the first to run rabbitmqctl on."""
        if self._broker_nodes is not None:
            return self._broker_nodes
        if self.node is None:
            raise BenchError("the node is not started")
        return [self.node]

    def rabbitmq_pids(self) -> list[int]:
        """The OS processes (Erlang VMs, beam.smp) of :attr:`broker_nodes` that are running."""
        return [pid for node in self.broker_nodes if (pid := rabbitmq_pid(node)) is not None]

    def write_config(
        self, *, flows: list[str], log_level: str = "INFO", extra: str = "", state_url: str | None = None
    ) -> Path:
        """Write the benchmark's config file and point ``CONVEYOR_CONFIG`` at it (here and in children).

        With ``state_url`` (``postgresql://...``) the state goes to that database instead of the SQLite file.
        """
        processes.write_config(
            self.config_path,
            broker_url=self.broker_url,
            gateway_port=self.gateway_port,
            state_path=self.state_path,
            flows=flows,
            heartbeat=HEARTBEAT,
            log_level=log_level,
            state_url=state_url,
            extra=extra,
        )
        if self._broker_nodes is not None or self._broker_settings:
            self._rewrite_broker_url()
        self.processes.env["CONVEYOR_CONFIG"] = str(self.config_path)
        return self.config_path

    def _rewrite_broker_url(self) -> None:
        # devtools' config names one URL: swap in the list of nodes and the extra [broker] keys.
        text = self.config_path.read_text()
        line = f'url = "{self.broker_url}"\n'
        if line not in text:
            raise BenchError(f"{self.config_path}: no line {line.strip()!r} to put the node list in")
        urls = [with_heartbeat(node.url, HEARTBEAT) for node in self.broker_nodes]
        keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in self._broker_settings.items())
        self.config_path.write_text(text.replace(line, f"url = {json.dumps(urls)}\n{keys}", 1))

    # -- processes -----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The environment the benchmark's processes get."""
        return self.processes.env

    def start(self, name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``python argv...`` in the project root, in its own session, logging to ``<name>.log``."""
        if name in self.processes.running:
            raise BenchError(f"process {name!r} is already running")
        return self.processes.start(name, *argv, env=env)

    def start_workers(
        self,
        name: str,
        module: str,
        *,
        processes: int,
        threads: int,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> subprocess.Popen[bytes]:
        """``dramatiq MODULE -p N -t T``; with ``wait``, returns once every worker process is ready."""
        master = self.start(name, "-m", "dramatiq", module, "-p", str(processes), "-t", str(threads), env=env)
        if wait:
            self.wait_workers_ready(name, processes)
        return master

    def wait_workers_ready(self, name: str, processes: int, timeout: float = 60) -> None:
        def ready() -> bool:
            self.check_alive(name)
            return self.log(name).count("is ready for action") >= processes

        wait_for(ready, timeout=timeout, what=f"{name}: {processes} worker process(es) ready", interval=0.02)

    def start_gateway(self, name: str = "gateway", timeout: float = 60) -> str:
        """``python -m gateway`` on the config's port; returns its URL once ``/health`` answers 200."""
        self.start(name, "-m", "gateway")
        url = f"http://{HOST}:{self.gateway_port}"
        self.wait_http(name, f"{url}/health", timeout=timeout)
        return url

    def wait_http(self, name: str, url: str, *, method: str = "GET", timeout: float = 60) -> None:
        """Wait until ``url`` answers 2xx (any body) while process ``name`` is alive."""

        def answers() -> bool:
            self.check_alive(name)
            try:
                return httpx.request(method, url, timeout=2, json={} if method == "POST" else None).is_success
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=timeout, what=f"{name} to answer {url}", interval=0.1)

    def check_alive(self, name: str) -> None:
        try:
            self.processes.check_alive(name)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM the process, SIGKILL its whole group if it lingers."""
        if name in self.processes.running and self.processes.running[name].poll() is None:
            started = time.monotonic()
            self.processes.stop(name, timeout=timeout)
            if time.monotonic() - started >= timeout:
                note(f"{name} did not stop within {timeout:.0f}s; killed it")
        else:
            self.processes.stop(name)

    def log_path(self, name: str) -> Path:
        return self.processes.log_path(name)

    def log(self, name: str) -> str:
        return self.processes.log(name)


@contextmanager
def _loopback_erlang_distribution() -> Iterator[None]:
    """Have the node's Erlang distribution port listen on 127.0.0.1 too (it defaults to every interface).

    LocalNode passes this process's environment on to the node, so the setting goes there.
    """
    variable = "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"
    previous = os.environ.get(variable)
    os.environ[variable] = f"{previous or ''} -kernel inet_dist_use_interface {{127,0,0,1}}".strip()
    try:
        yield
    finally:
        if previous is None:
            del os.environ[variable]
        else:
            os.environ[variable] = previous


def rabbitmq_pid(node: LocalNode) -> int | None:
    """The OS process id of ``node``'s Erlang VM (from its pid file), if it has one."""
    try:
        return int((node.base / "rabbitmq.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
