"""The fault run: orders under load while workers are killed, RabbitMQ and the gateway restart.

``python -m tests.faults --orders 10000 --rate 100`` (the long form; CI runs 1,000 through
tests/test_faults.py). It starts a RabbitMQ node of its own and the whole system through
``devtools.launcher`` (whose supervisor restarts what dies), posts orders at a steady rate,
and meanwhile SIGKILLs a worker process 5 times, restarts RabbitMQ once (stop, start) and
kills the gateway once. Then it waits for every accepted order to complete and prints one
JSON line: accepted, rejected (answered non-2xx or not at all: the client knows to retry),
completed, lost (accepted but never completed: must be 0), handler runs beyond one per
order (redeliveries) and whether any effect happened twice (stock, notifications).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from conveyor import StateStore, open_store
from devtools.localnode import LocalNode, free_node_ports
from devtools.processes import children, command_line, free_port, write_config

ROOT = Path(__file__).resolve().parent.parent
STOCK = 1_000_000


@dataclass
class Figures:
    orders: int
    accepted: int = 0
    rejected: int = 0
    #: Why requests were rejected: "503", "unreachable" (gateway restarting)...
    rejections: dict[str, int] = field(default_factory=dict)
    completed: int = 0
    lost: int = 0
    process_order_runs: int = 0
    duplicate_handler_runs: int = 0
    stock_taken: int = 0
    stock_expected: int = 0
    #: Orders that completed although their POST got no 2xx: the gateway died between RabbitMQ's
    #: confirm and its answer. The client retries them; they are not lost, and not counted twice.
    completed_unanswered: int = 0
    duplicate_notifications: int = 0
    drain_seconds: float = 0.0
    faults: list[str] = field(default_factory=list)


class FaultRun:
    def __init__(self, base: Path, orders: int, rate: float) -> None:
        self.base = base
        self.figures = Figures(orders=orders)
        self.rate = rate
        port, management = free_node_ports()
        self.node = LocalNode(base / "rabbitmq", port=port, management_port=management, name="faults")
        self.gateway_port = free_port()
        self.state_path = base / "state.db"
        self.config = base / "config.toml"
        retries = "max_retries = 20\nretry_delay = 200\nmax_retry_delay = 2000\n"
        write_config(
            self.config,
            broker_url=self.node.url,
            gateway_port=self.gateway_port,
            state_path=self.state_path,
            flows=["flows"],
            heartbeat=5,
            extra="".join(
                f"[steps.{step}]\n{retries}" for step in ("ProcessOrder", "UpdateInventory", "SendNotification")
            ),
        )
        self.env = {**os.environ, "CONVEYOR_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
        self.launcher: subprocess.Popen[bytes] | None = None
        self.order_ids: list[str] = []

    # -- processes ------------------------------------------------------------------------

    def start(self) -> None:
        self.node.start()
        log = open(self.base / "system.log", "wb")  # noqa: SIM115 - owned by the child
        self.launcher = subprocess.Popen(
            [sys.executable, "-m", "devtools.launcher", "--processes", "2", "--threads", "4"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the system did not come up; see {self.base / 'system.log'}")
            time.sleep(0.2)
        open_store(self.state_path).set("inventory", "fault-widget", {"stock": STOCK})
        while len(self.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        if self.launcher and self.launcher.poll() is None:
            self.launcher.send_signal(signal.SIGTERM)
            try:
                self.launcher.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.launcher.pid, signal.SIGKILL)
        self.node.stop()

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.gateway_port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def program_pid(self, word: str) -> int | None:
        assert self.launcher is not None
        return next((pid for pid in children(self.launcher.pid) if word in command_line(pid)), None)

    def worker_pids(self) -> list[int]:
        master = self.program_pid("dramatiq")
        return children(master) if master else []

    # -- faults ---------------------------------------------------------------------------

    async def faults(self, duration: float) -> None:
        moments = sorted(random.uniform(0.1, 0.9) * duration for _ in range(5))
        plan = [(t, "kill-worker") for t in moments]
        plan += [(duration * 0.45, "restart-rabbitmq"), (duration * 0.7, "restart-gateway")]
        started = time.monotonic()

        async def apply_at(at: float, fault: str) -> None:
            await asyncio.sleep(at)
            self.figures.faults.append(f"{time.monotonic() - started:.1f}s {fault}")
            await asyncio.to_thread(self._apply, fault)

        await asyncio.gather(*(apply_at(at, fault) for at, fault in plan))

    def _apply(self, fault: str) -> None:
        if fault == "kill-worker":
            for _ in range(100):  # workers may be restarting after the previous kill
                if pids := self.worker_pids():
                    os.kill(random.choice(pids), signal.SIGKILL)
                    return
                time.sleep(0.1)
        elif fault == "restart-rabbitmq":
            self.node.stop()
            time.sleep(0.5)
            self.node.start()
        elif fault == "restart-gateway":
            if pid := self.program_pid("gateway"):
                os.kill(pid, signal.SIGKILL)

    # -- load -----------------------------------------------------------------------------

    async def load(self) -> None:
        body = {"customerId": "fault-run", "items": [{"productId": "fault-widget", "quantity": 1, "price": 1.5}]}
        url = f"http://127.0.0.1:{self.gateway_port}/orders"
        async with httpx.AsyncClient(timeout=10) as client:

            async def post() -> None:
                try:
                    response = await client.post(url, json=body)
                except httpx.HTTPError as exc:
                    self._reject("unreachable" if isinstance(exc, httpx.ConnectError) else type(exc).__name__)
                    return
                if response.is_success:
                    self.figures.accepted += 1
                    self.order_ids.append(response.json()["orderId"])
                else:
                    self._reject(str(response.status_code))

            tasks = []
            started = time.monotonic()
            for n in range(self.figures.orders):
                await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
                tasks.append(asyncio.create_task(post()))
            await asyncio.gather(*tasks)

    def _reject(self, reason: str) -> None:
        self.figures.rejected += 1
        self.figures.rejections[reason] = self.figures.rejections.get(reason, 0) + 1

    # -- results --------------------------------------------------------------------------

    def drain(self, timeout: float) -> None:
        state = open_store(self.state_path)
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._completed(state) == len(self.order_ids):
                break
            time.sleep(0.5)
        self.figures.drain_seconds = round(time.monotonic() - started, 1)
        self.figures.completed = self._completed(state)
        self.figures.lost = len(self.order_ids) - self.figures.completed
        notified = [n for n in state.list("notifications") if n["customerId"] == "fault-run"]
        per_order: dict[str, int] = {}
        for notification in notified:
            per_order[notification["orderId"]] = per_order.get(notification["orderId"], 0) + 1
        self.figures.duplicate_notifications = sum(count - 1 for count in per_order.values())
        self.figures.stock_taken = STOCK - state.get("inventory", "fault-widget")["stock"]
        self.figures.stock_expected = len(state.items("inventory-applied"))
        accepted = set(self.order_ids)
        self.figures.completed_unanswered = sum(
            1
            for order in state.list("orders")
            if order["customerId"] == "fault-run"
            and order["status"] == "completed"
            and order["orderId"] not in accepted
        )
        log = (self.base / "system.log").read_text(errors="replace")
        runs = len(re.findall(r"Processing order orderId=\S+ customerId=fault-run", log))
        self.figures.process_order_runs = runs
        self.figures.duplicate_handler_runs = runs - len(self.order_ids)

    def _completed(self, state: StateStore) -> int:
        done = 0
        for order_id in self.order_ids:
            order = state.get("orders", order_id)
            if order and order["status"] == "completed" and state.get("notifications", f"notif-{order_id}-completed"):
                done += 1
        return done

    async def run(self) -> Figures:
        duration = self.figures.orders / self.rate
        await asyncio.gather(self.load(), self.faults(duration))
        await asyncio.to_thread(self.drain, 300)
        return self.figures


def run(orders: int, rate: float, keep: bool = False) -> Figures:
    base = Path(tempfile.mkdtemp(prefix="conveyor-faults-"))
    fault_run = FaultRun(base, orders, rate)
    try:
        fault_run.start()
        return asyncio.run(fault_run.run())
    finally:
        fault_run.stop()
        if not keep:
            subprocess.run(["rm", "-rf", str(base)], check=False)
        else:
            print(f"logs kept in {base}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second")
    parser.add_argument("--keep", action="store_true", help="keep the logs and state")
    args = parser.parse_args()
    figures = run(args.orders, args.rate, args.keep)
    print(json.dumps(asdict(figures)))
    print(
        f"{figures.accepted} accepted, {figures.rejected} rejected {figures.rejections}, "
        f"{figures.completed} completed, "
        f"{figures.lost} lost; {figures.duplicate_handler_runs} extra ProcessOrder runs (redeliveries); "
        f"stock taken {figures.stock_taken} for {figures.stock_expected} orders applied; "
        f"{figures.duplicate_notifications} duplicate notifications; drained in {figures.drain_seconds}s"
    )


if __name__ == "__main__":
    main()
