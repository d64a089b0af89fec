"""The development loop (``bash scripts/dev.sh``): saving a step's file restarts what runs it; a broken file does not.

A project of the test's own (one flow package with an HTTP step, a queue step and a cron
step, each reporting the code version it runs) runs under ``python -m devtools.launcher
--reload`` against the suite's RabbitMQ node.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import open_store
from devtools.localnode import LocalNode
from devtools.processes import Processes, free_port, wait_for, write_config
from tests.flow_support import Management

pytestmark = pytest.mark.integration

FLOW = """
from conveyor import AsyncContext, Context, Request, cron, http, queue, step

VERSION = {version}


@step(name="Hello", triggers=[http("GET", "/hello")], enqueues=["dev.ping"])
async def hello(request: Request, ctx: AsyncContext) -> dict:
    await ctx.enqueue("dev.ping", {{"sent": VERSION}})
    return {{"status": 200, "body": {{"version": VERSION}}}}


@step(name="Ping", triggers=[queue("dev.ping")])
def ping(data: dict, ctx: Context) -> None:
    ctx.state.set("dev", "ping", {{"worker": VERSION, "sent": data["sent"]}})


@step(name="Tick", triggers=[cron("* * * * * *")])
def tick(_: None, ctx: Context) -> None:
    ctx.state.set("dev", "tick", {{"scheduler": VERSION, "at": __import__("time").time()}})
"""


class DevProject:
    def __init__(self, base: Path, node: LocalNode) -> None:
        self.base = base
        self.module = base / "devflow" / "steps.py"
        self.module.parent.mkdir()
        (self.module.parent / "__init__.py").write_text("")
        self.save(1)
        self.vhost = f"dev-{uuid.uuid4().hex[:8]}"
        self.management = Management(node)
        self.management.create_vhost(self.vhost)
        self.port = free_port()
        self.state = open_store(base / "state.db")
        config = write_config(
            base / "config.toml",
            broker_url=f"amqp://guest:guest@127.0.0.1:{node.port}/{self.vhost}",
            gateway_port=self.port,
            state_path=base / "state.db",
            flows=["devflow"],
        )
        self.processes = Processes(base, env={"CONVEYOR_CONFIG": str(config), "PYTHONPATH": str(base)})
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def save(self, version: int | str) -> None:
        source = FLOW.format(version=version) if isinstance(version, int) else version
        self.module.write_text(source)

    def served(self) -> int | None:
        try:
            response = self.http.get("/hello")
        except httpx.TransportError:
            return None
        return response.json()["version"] if response.status_code == 200 else None

    def running(self, version: int) -> bool:
        """The gateway, the workers and the scheduler all run ``version``."""
        if self.served() != version:
            return False
        ping, tick = self.state.get("dev", "ping") or {}, self.state.get("dev", "tick") or {}
        return ping.get("worker") == version and tick.get("scheduler") == version

    def log(self) -> str:
        return self.processes.log("dev")

    def close(self) -> None:
        self.processes.stop_all()
        self.http.close()
        self.management.delete_vhost(self.vhost)


@pytest.fixture
def project(rabbitmq: LocalNode, tmp_path: Path) -> Iterator[DevProject]:
    running = DevProject(tmp_path, rabbitmq)
    running.processes.start("dev", "-m", "devtools.launcher", "--reload", "--processes", "1", "--threads", "2")
    try:
        yield running
    finally:
        running.close()


def test_a_saved_step_is_picked_up_by_the_gateway_the_workers_and_the_scheduler(project):
    wait_for(lambda: project.running(1), timeout=60, what="version 1 everywhere")

    reloads = []
    for version in (2, 3):
        saved = time.monotonic()
        project.save(version)
        wait_for(lambda v=version: project.running(v), timeout=30, what=f"version {version} everywhere", interval=0.1)
        reloads.append(time.monotonic() - saved)
    print(
        f"\nsaved to new code in the gateway, the workers and the scheduler: {', '.join(f'{s:.1f} s' for s in reloads)}"
    )
    assert "changed" in project.log() and "restarting the gateway, the workers and the scheduler" in project.log()


def test_a_file_saved_with_a_syntax_error_is_reported_and_the_system_keeps_serving(project):
    wait_for(lambda: project.running(1), timeout=60, what="version 1 everywhere")

    project.save("from conveyor import step\n\ndef broken(:\n    pass\n")
    wait_for(lambda: "no longer load" in project.log(), timeout=30, what="the load error in the log")
    log = project.log()
    assert "flow module 'devflow.steps' failed to import: SyntaxError" in log
    assert f"{project.module}, line 3" in log
    time.sleep(2)  # a restart would be done by now: the old code still answers
    assert project.served() == 1

    project.save(2)
    wait_for(lambda: project.running(2), timeout=30, what="version 2 once the file is fixed", interval=0.1)
    assert "The flows load again." in project.log()
