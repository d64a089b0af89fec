"""Start a RabbitMQ node that the project owns (its own data directory and ports), for dev and tests.

``python -m devtools.localnode start`` starts one under ``var/rabbitmq`` if nothing answers on
the AMQP port yet; ``stop`` stops it. Needs Debian's ``rabbitmq-server`` package.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbitmq_installed() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists() or shutil.which("rabbitmq-server") is not None


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_node_ports() -> tuple[int, int]:
    """Ports for a :class:`LocalNode`: AMQP and management (AMQP + 1), with its Erlang
    distribution port (AMQP + 20000) free too.

    All three stay below Linux's ephemeral range (32768 and up) and apart from the ports
    :func:`devtools.processes.free_port` hands out, so neither a client connection nor another
    test's gateway can take them meanwhile.
    """
    for _ in range(100):
        port = random.randrange(10000, 12700, 2)
        if not any(port_open(p) for p in (port, port + 1, port + 20000)):
            return port, port + 1
    raise RuntimeError("no free ports for a local RabbitMQ node")


@dataclass
class LocalNode:
    """A RabbitMQ node living entirely under ``base`` and listening on loopback."""

    base: Path
    port: int = 5672
    management_port: int = 15672
    name: str = "conveyor"

    @property
    def nodename(self) -> str:
        return f"{self.name}-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def _env(self) -> dict[str, str]:
        self.base.mkdir(parents=True, exist_ok=True)
        plugins = self.base / "enabled_plugins"
        plugins.write_text("[rabbitmq_management].\n")
        env = dict(os.environ)
        env.update(
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.port + 20000),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_PID_FILE=str(self.base / "rabbitmq.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(plugins),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq"),
            RABBITMQ_SERVER_START_ARGS=(
                f'-rabbitmq_management listener [{{port,{self.management_port}}},{{ip,"127.0.0.1"}}]'
            ),
            # Erlang's distribution port on loopback too: nothing of this node listens outside.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _tool(self, name: str) -> str:
        path = RABBITMQ_BIN / name
        return str(path) if path.exists() else name

    def start(self, timeout: float = 90) -> None:
        """Start the node in the background and wait until it accepts AMQP connections."""
        if port_open(self.port):
            return
        try:
            self._start(timeout)
        except subprocess.CalledProcessError:
            # A node stopped a moment ago can leave Erlang's port mapper a beat behind: once more.
            time.sleep(2)
            if not port_open(self.port):
                self._start(timeout)

    def _start(self, timeout: float) -> None:
        env = self._env()
        # A pid file left by the previous run would name a dead process to `rabbitmqctl wait`.
        (self.base / "rabbitmq.pid").unlink(missing_ok=True)
        log = open(self.base / "server.out", "ab")  # noqa: SIM115 - handed to the child process
        subprocess.Popen([self._tool("rabbitmq-server")], env=env, stdout=log, stderr=log, start_new_session=True)
        subprocess.run(
            [
                self._tool("rabbitmqctl"),
                "-n",
                self.nodename,
                "wait",
                str(self.base / "rabbitmq.pid"),
                "--timeout",
                str(int(timeout)),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=timeout + 10,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.nodename} did not open port {self.port}; see {self.base}/log")
            time.sleep(0.2)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl`` against this node."""
        return subprocess.run(
            [self._tool("rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop(self, timeout: float = 60) -> None:
        """Stop the node and wait until its ports are free again, so a restart can take them."""
        self.ctl("stop", timeout=timeout)
        deadline = time.monotonic() + timeout
        while port_open(self.port) or port_open(self.port + 20000):
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.nodename} still holds its ports after stopping")
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.localnode", description=__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--base", default="var/rabbitmq")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--management-port", type=int, default=15672)
    args = parser.parse_args()
    node = LocalNode(Path(args.base).resolve(), args.port, args.management_port)
    if args.action == "start":
        if port_open(args.port):
            print(f"RabbitMQ already answers on port {args.port}; using it.")
            return
        if not rabbitmq_installed():
            sys.exit("rabbitmq-server is not installed: apt-get install rabbitmq-server")
        node.start()
        print(f"Started RabbitMQ node {node.nodename} on port {args.port} (data in {node.base}).")
    else:
        node.stop()


if __name__ == "__main__":
    main()
