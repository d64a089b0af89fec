"""A Conveyor deployment spread as it would be over several hosts, on this one: 2 gateways on their own
ports, 2 worker processes and 2 schedulers, against a 3-node RabbitMQ cluster (quorum queues) and one
PostgreSQL server. Workers that die are started again, as a supervisor would.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx

from conveyor import StateStore, open_store
from devtools.cluster import LocalCluster
from devtools.processes import Processes, children, free_port, wait_for

#: The name the deployment's queues carry.
NAME = "cl"
#: Retries generous enough to span a node's death and a leader election.
RETRIED = ("ProcessOrder", "UpdateInventory", "SendNotification", "CountOnce")
#: Deliveries after the first before a quorum queue dead-letters a message.
DELIVERY_LIMIT = 3


def rotated(items: list[str], by: int) -> list[str]:
    return items[by:] + items[:by]


class Deployment:
    """The processes of one deployment, their config, and the shared state they write."""

    def __init__(self, base: Path, cluster: LocalCluster, state_url: str) -> None:
        self.base = base
        self.cluster = cluster
        self.state_url = state_url
        self.gateway_ports = [free_port(), free_port()]
        self.config_path = self.write_config(base / "config.toml")
        self.processes = Processes(base, env={"CONVEYOR_CONFIG": str(self.config_path)})
        self.state: StateStore = open_store(state_url)
        self._supervised: dict[str, tuple[str, ...]] = {}
        self._stopping = threading.Event()
        self._keeper = threading.Thread(target=self._keep_running, daemon=True)
        #: Worker processes started again after they died.
        self.restarts: dict[str, int] = {}

    def write_config(self, path: Path, step_settings: dict[str, str] | None = None) -> Path:
        """The deployment's config.toml; ``step_settings`` adds lines to (or creates) steps' tables."""
        tables = {step: "max_retries = 30\nretry_delay = 200\nmax_retry_delay = 2000\n" for step in RETRIED}
        for step, lines in (step_settings or {}).items():
            tables[step] = tables.get(step, "") + lines
        steps = "".join(f"[steps.{step}]\n{lines}" for step, lines in tables.items())
        path.write_text(
            f"""[project]
name = "{NAME}"
flows = ["flows.orders", "tests.cluster.flows"]
[broker]
url = {json.dumps(self.cluster.urls)}
management_url = {json.dumps(self.cluster.management_urls)}
heartbeat = 5
queue_type = "quorum"
delivery_limit = {DELIVERY_LIMIT}
[gateway]
host = "127.0.0.1"
port = {self.gateway_ports[0]}
[state]
url = "{self.state_url}"
[logging]
level = "INFO"
{steps}"""
        )
        return path

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(1, len(self.gateway_ports) + 1):
            self.start_gateway(n)
        for n in (1, 2):
            self.start_workers(n)
        for n in (1, 2):
            self.start_scheduler(n)
        for n in range(len(self.gateway_ports)):
            wait_for(lambda n=n: self.healthy(n), 90, what=f"gateway {n + 1}")
        for n in (1, 2):
            wait_for(lambda n=n: "ready for action" in self.processes.log(f"workers{n}"), 90, what=f"workers{n}")
        self._keeper.start()

    def start_gateway(self, n: int) -> None:
        self.processes.start(f"gateway{n}", "-m", "gateway", "--port", str(self.gateway_ports[n - 1]))

    def start_workers(self, n: int) -> None:
        # Each worker process lists the nodes in another order, as hosts configured apart would.
        argv = ("-m", "dramatiq", "actors", "-p", "1", "-t", "4")
        self._supervised[f"workers{n}"] = argv
        urls = ",".join(rotated(self.cluster.urls, n))
        self.processes.start(f"workers{n}", *argv, env={"CONVEYOR_BROKER_URL": urls})

    def start_scheduler(self, n: int, **env: str) -> None:
        self.processes.start(f"scheduler{n}", "-m", "scheduler", env=env)

    def _keep_running(self) -> None:
        while not self._stopping.wait(0.5):
            for name in list(self._supervised):
                process = self.processes.running.get(name)
                if process is not None and process.poll() is not None:
                    self.processes.stop(name)
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self.start_workers(int(name.removeprefix("workers")))

    def worker_pids(self, n: int) -> list[int]:
        """The worker processes (children of the ``dramatiq`` master) of ``workers<n>``."""
        master = self.processes.running.get(f"workers{n}")
        return children(master.pid) if master is not None and master.poll() is None else []

    def signal(self, name: str, sig: int) -> None:
        process = self.processes.running[name]
        process.send_signal(sig)

    def kill(self, name: str) -> None:
        """``kill -9`` a process (and nothing restarts it unless it is a worker)."""
        self.processes.stop(name, signal.SIGKILL, timeout=5)

    def stop(self) -> None:
        self._stopping.set()
        if self._keeper.is_alive():
            self._keeper.join(5)
        self.processes.stop_all(timeout=20)
        self.state.close()

    # -- HTTP --------------------------------------------------------------------------------

    def gateway_url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.gateway_ports[n]}"

    def healthy(self, n: int) -> bool:
        try:
            return httpx.get(self.gateway_url(n) + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self, name: str) -> str:
        return self.processes.log(name)

    def queue_leader(self, queue: str) -> str:
        """The node that leads quorum queue ``queue``, asked of any node that answers."""
        for url in self.cluster.management_urls:
            try:
                answer = httpx.get(f"{url}/api/queues/%2F/{queue}", auth=("guest", "guest"), timeout=5)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200 and answer.json().get("leader"):
                return str(answer.json()["leader"])
        raise RuntimeError(f"no node reports a leader for {queue}")
