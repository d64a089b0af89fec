"""What the example-flow tests share: a Conveyor system in a RabbitMQ virtual host of its own.

Each flow test module runs its own gateway, workers and (when it tests cron steps) scheduler,
with the config it needs (short retry delays, cron steps every second). The virtual host keeps
its queues apart from every other system the suite runs on the same node, so a message a test
leaves behind (a retry still waiting, a cron firing) never reaches another test's workers.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devtools.localnode import LocalNode
from tests.system import System, wait_for


class Management:
    """The RabbitMQ management API of the suite's node (guest may use it from loopback)."""

    def __init__(self, node: LocalNode) -> None:
        self.http = httpx.Client(base_url=node.management_url, auth=("guest", "guest"), timeout=10)

    def create_vhost(self, vhost: str) -> None:
        self.http.put(f"/api/vhosts/{vhost}").raise_for_status()
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        self.http.put(f"/api/permissions/{vhost}/guest", json=permissions).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        self.http.delete(f"/api/vhosts/{vhost}")

    def set_policy(self, vhost: str, name: str, pattern: str, definition: dict[str, Any]) -> None:
        policy = {"pattern": pattern, "definition": definition, "apply-to": "queues", "priority": 10}
        self.http.put(f"/api/policies/{vhost}/{name}", json=policy).raise_for_status()

    def delete_policy(self, vhost: str, name: str) -> None:
        self.http.delete(f"/api/policies/{vhost}/{name}")

    def close(self) -> None:
        self.http.close()


class FlowSystem(System):
    """A :class:`~tests.system.System` whose broker URL points at a virtual host made for it."""

    def __init__(self, base: Path, node: LocalNode, vhost: str, extra_config: str = "") -> None:
        self.node = node
        self.vhost = vhost
        self.management = Management(node)
        self.management.create_vhost(vhost)
        super().__init__(base, f"amqp://guest:guest@127.0.0.1:{node.port}/{vhost}", extra_config)

    def start_all(self, *, workers: bool = True, gateway: bool = True, scheduler: bool = False) -> None:
        """Start the processes side by side (they boot in parallel), then wait for them to be ready."""
        if workers:
            self.start("workers", "-m", "dramatiq", "actors", "-p", "1", "-t", "4")
        if gateway:
            self.start("gateway", "-m", "gateway")
        if scheduler:
            self.start("scheduler", "-m", "scheduler")
        if workers:
            wait_for(lambda: "ready for action" in self.log("workers"), timeout=60)
        if gateway:
            wait_for(self._gateway_up, timeout=60)
        if scheduler:
            wait_for(lambda: "Scheduled" in self.log("scheduler"), timeout=60)

    def start_workers(self, processes: int = 1, threads: int = 4) -> Any:
        process = self.start("workers", "-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads))
        wait_for(lambda: "ready for action" in self.log("workers"), timeout=60)
        return process

    @contextmanager
    def refusing(self, queue: str) -> Iterator[None]:
        """While inside, RabbitMQ refuses every message published to ``queue`` (a step's queue).

        A policy caps the queue at zero messages and rejects publishes beyond that, so a step
        enqueueing to it gets a negative confirm: the failure a full or broken queue gives.
        RabbitMQ applies a policy before the management API answers (the API's own view of it
        lags by seconds), so no waiting is needed either way.
        """
        name = f"refuse-{queue}"
        self.management.set_policy(self.vhost, name, f"^{queue}$", {"max-length": 0, "overflow": "reject-publish"})
        try:
            yield
        finally:
            self.management.delete_policy(self.vhost, name)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Signal the process itself, not its group: ``dramatiq`` forwards the signal to its worker
        processes, and a worker signalled twice (by the group signal and by its parent) takes the
        second as "kill now" and hangs until the group is killed."""
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                pass
        super().stop(name, signal.SIGKILL)

    def stop_all(self) -> None:
        started = time.monotonic()
        super().stop_all()
        print(f"\nsystem stopped in {time.monotonic() - started:.1f} s")
        self.management.delete_vhost(self.vhost)
        self.management.close()


@contextmanager
def flow_system(
    node: LocalNode,
    base: Path,
    extra_config: str = "",
    *,
    workers: bool = True,
    gateway: bool = True,
    scheduler: bool = False,
) -> Iterator[FlowSystem]:
    """A running :class:`FlowSystem`, stopped (and its virtual host deleted) on exit."""
    system = FlowSystem(base, node, f"flows-{uuid.uuid4().hex[:10]}", extra_config)
    try:
        started = time.monotonic()
        system.start_all(workers=workers, gateway=gateway, scheduler=scheduler)
        print(f"\nsystem up in {time.monotonic() - started:.1f} s")
        yield system
    finally:
        system.stop_all()
