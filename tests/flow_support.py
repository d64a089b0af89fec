"""What the flows' end-to-end tests share: a Conveyor system in a RabbitMQ virtual host of its own.

Each smoke test runs its own gateway, workers and (when it needs cron) scheduler, with the
config it needs. The virtual host keeps its queues apart from every other system the suite
runs on the same node, so a message a test leaves behind (a retry still waiting, a cron
firing) never reaches another test's workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from conveyor.ops.management import ManagementAPI
from devtools.localnode import LocalNode
from devtools.processes import wait_for
from tests.system import System


class Management:
    """The RabbitMQ management API of the suite's node, as guest (allowed from loopback): what tests set up."""

    def __init__(self, node: LocalNode, vhost: str = "/") -> None:
        self.api = ManagementAPI(
            node.management_url, f"amqp://guest:guest@127.0.0.1:{node.port}/{quote(vhost, safe='')}"
        )

    def create_vhost(self, vhost: str) -> None:
        self.api.request("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        self.api.request("PUT", f"/api/permissions/{quote(vhost, safe='')}/guest", permissions)

    def delete_vhost(self, vhost: str) -> None:
        try:
            self.api.request("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
        except LookupError:
            pass


@contextmanager
def own_vhost(node: LocalNode, prefix: str) -> Iterator[str]:
    """A virtual host of the caller's own on ``node`` (``prefix-<random>``), deleted on exit: its AMQP URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    management = Management(node)
    management.create_vhost(name)
    try:
        yield f"amqp://guest:guest@127.0.0.1:{node.port}/{quote(name, safe='')}"
    finally:
        management.delete_vhost(name)


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
            self.wait_workers()
        if gateway:
            self.wait_gateway()
        if scheduler:
            wait_for(lambda: "Scheduled" in self.log("scheduler"), 60, what="the scheduler")

    def stop_all(self) -> None:
        started = time.monotonic()
        super().stop_all()
        print(f"\nsystem stopped in {time.monotonic() - started:.1f} s")
        self.management.delete_vhost(self.vhost)


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
