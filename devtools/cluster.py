"""A RabbitMQ cluster on one host, for tests and benchmarks: N :class:`LocalNode` s joined together.

Every node has its own data directory, ports and Erlang node name (``<name>-<port>@localhost``),
listens on loopback only and shares the host's Erlang cookie and port mapper. The first node
starts alone; the others start, stop their app, join it and start again (about 11 s for three on
two cores). ``kill`` and ``start`` take one node down hard and bring it back, as a fault would.

``python -m devtools.cluster start --base var/cluster`` starts three and prints their URLs; ``stop`` stops them.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.localnode import LocalNode, free_node_ports, port_open

#: Nodes ``python -m devtools.cluster`` starts by default.
DEFAULT_SIZE = 3


@dataclass
class LocalCluster:
    """``size`` RabbitMQ nodes under ``base``, joined into one cluster."""

    base: Path
    size: int = DEFAULT_SIZE
    name: str = "cluster"
    nodes: list[LocalNode] = field(default_factory=list)

    def start(self, timeout: float = 120) -> None:
        """Start every node and join the others to the first; returns once all report running."""
        if not self.nodes:
            taken: set[int] = set()
            for index in range(self.size):
                port, management = _ports(taken)
                self.nodes.append(
                    LocalNode(self.base / f"node{index + 1}", port, management, name=f"{self.name}{index + 1}")
                )
        first, *others = self.nodes
        first.start(timeout)
        for node in others:
            node.start(timeout)
            if self._member(node, first):
                continue
            for args in (("stop_app",), ("join_cluster", first.nodename), ("start_app",)):
                done = node.ctl(*args, timeout=timeout)
                if done.returncode != 0:
                    raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.nodename} failed: {done.stderr.strip()}")
        self.wait_running(timeout)

    def _member(self, node: LocalNode, first: LocalNode) -> bool:
        status = node.ctl("cluster_status", "--formatter", "json")
        return status.returncode == 0 and first.nodename in status.stdout

    def wait_running(self, timeout: float = 60) -> None:
        """Wait until every node of the cluster sees all of them running."""
        deadline = time.monotonic() + timeout
        names = {node.nodename for node in self.nodes}
        while True:
            status = self.nodes[0].ctl("cluster_status", "--formatter", "json")
            if status.returncode == 0 and all(f'"{name}"' in _running_part(status.stdout) for name in names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not report {sorted(names)} running: {status.stdout or status.stderr}")
            time.sleep(0.5)

    @property
    def urls(self) -> list[str]:
        """Every node's AMQP URL, in node order."""
        return [node.url for node in self.nodes]

    @property
    def management_urls(self) -> list[str]:
        return [node.management_url for node in self.nodes]

    def node_named(self, nodename: str) -> LocalNode:
        """The node whose Erlang name is ``nodename`` (as the management API reports leaders)."""
        for node in self.nodes:
            if node.nodename == nodename:
                return node
        raise KeyError(f"{nodename} is not a node of this cluster ({[n.nodename for n in self.nodes]})")

    def pid(self, node: LocalNode) -> int:
        """The Erlang VM of ``node``."""
        return int((node.base / "rabbitmq.pid").read_text().strip())

    def kill(self, node: LocalNode) -> None:
        """``kill -9`` the node's VM, as a crash would, and wait until its port is closed."""
        os.kill(self.pid(node), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while port_open(node.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.nodename} still answers after SIGKILL")
            time.sleep(0.05)

    def restart(self, node: LocalNode, timeout: float = 120) -> None:
        """Start a killed or stopped node again; it rejoins the cluster by itself."""
        node.start(timeout)
        self.wait_running(timeout)

    def stop(self) -> None:
        """Stop every node (the last one first), leaving no Erlang VM behind."""
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - a node already gone must not keep the others running
                pid_file = node.base / "rabbitmq.pid"
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass


def _ports(taken: set[int]) -> tuple[int, int]:
    while True:
        port, management = free_node_ports()
        if port not in taken:
            taken.update({port, management})
            return port, management


def _running_part(status_json: str) -> str:
    # `cluster_status --formatter json` lists "running_nodes": [...] among other keys.
    start = status_json.find('"running_nodes"')
    return status_json[start : status_json.find("]", start)] if start >= 0 else ""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.cluster", description=__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--base", default="var/cluster")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    args = parser.parse_args()
    base = Path(args.base).resolve()
    if args.action == "start":
        cluster = LocalCluster(base, args.size)
        started = time.monotonic()
        cluster.start()
        (base / "urls").write_text("\n".join(f"{n.nodename} {n.url} {n.management_url}" for n in cluster.nodes))
        print(f"{args.size} nodes joined in {time.monotonic() - started:.1f}s:")
        print(",".join(cluster.urls))
    else:
        for line in (base / "urls").read_text().splitlines():
            nodename, url, management = line.split()
            node = LocalNode(
                base / f"node{nodename.split('-')[0].removeprefix('cluster')}",
                int(url.rsplit(":", 1)[1].split("/")[0]),
                int(management.rsplit(":", 1)[1]),
                name=nodename.split("-")[0],
            )
            node.stop()


if __name__ == "__main__":
    main()
