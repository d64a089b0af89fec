"""One system's run of the order benchmark in one round: fresh state, its processes, the phases, the stock check."""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .gateway import find_wrk, run_wrk
from .glue import QUEUES as GLUE_QUEUES
from .glue.state import STATE_PATH_ENV as GLUE_STATE_ENV
from .glue.state import TABLE as GLUE_TABLE
from .glue.state import KeyValueStore
from .harness import (
    HOST,
    BenchError,
    Harness,
    free_port,
    note,
    percentile,
)
from .order_load import ITEMS, CpuMeter, post_orders
from .order_state import Postgres, RuntimeStoreReader, SqliteReader, remove_sqlite

#: What each product's stock is set to before the orders: more than any run takes.
INITIAL_STOCK = 1_000_000
#: Conveyor's ``[admin] api_key`` in the bench's config: the loop-lag endpoint sits under /_admin.
ADMIN_KEY = "bench-orders-admin-key"
#: The queues Conveyor's order flow uses (``<[project] name>.<flow>.<Step>``), delay queues included.
CONVEYOR_QUEUES = tuple(
    f"conveyor.order-processing.{step}"
    for step in ("ProcessOrder", "UpdateInventory", "SendNotification", "HandleFailedOrder")
)
#: Conveyor's state table in its SQLite file (conveyor/store/sqlite.py).
CONVEYOR_TABLE = "state"
SYSTEMS = ("conveyor", "glue")
BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class System:
    """One side of the comparison: ``conveyor`` (on a state backend) or ``glue`` (always SQLite)."""

    kind: str
    backend: str = "sqlite"

    @property
    def name(self) -> str:
        return self.kind if self.backend == "sqlite" else f"{self.kind}-{self.backend}"

    @property
    def queues(self) -> list[str]:
        names = CONVEYOR_QUEUES if self.kind == "conveyor" else GLUE_QUEUES
        return [*names, *(f"{name}.DQ" for name in names)]


# -- one system, one round -----------------------------------------------------------------------


class StateReader(Protocol):
    """What the bench reads of a system's state: how many notifications, and a product's stock."""

    def notifications(self) -> int: ...

    def orders(self) -> int: ...

    def failed_notifications(self) -> int: ...

    def stock(self, product: str) -> int | None: ...

    def close(self) -> None: ...


class Trial:
    """One system's run in one round: fresh state, its processes, the phases, the stock check."""

    def __init__(
        self,
        bench: Harness,
        system: System,
        args: argparse.Namespace,
        round_number: int,
        postgres: Postgres | None,
        *,
        name: str | None = None,
    ) -> None:
        self.bench = bench
        self.system = system
        self.args = args
        #: Names the trial's processes, logs and database: ``name`` (default the system's) and the round.
        self.label = f"{name or system.name}-r{round_number}"
        self.round = round_number
        self.postgres = postgres if system.backend == "postgres" else None
        self.deadline = time.monotonic() + args.timeout
        self.names = {"workers": f"{self.label}-workers", "gateway": f"{self.label}-gateway"}
        self.url = ""
        self.reader: StateReader | None = None
        #: wrk sends phase 2's POSTs (installed with apt-get, as root, if missing).
        self.wrk = find_wrk() if args.post_seconds > 0 else None
        if args.post_seconds > 0 and self.wrk is None:
            raise BenchError("phase 2 needs wrk: apt-get install wrk (or --post-seconds 0)")
        self.database: str | None = None
        #: Orders the gateway accepted so far (each must end with a notification).
        self.accepted = 0

    def run(self) -> dict[str, Any]:
        """The trial's figures, or ``{"error": ...}`` if the system failed (the other systems still run)."""
        started = time.monotonic()
        result: dict[str, Any] = {"round": self.round}
        try:
            self._start()
            result["startup_s"] = round(time.monotonic() - started, 2)
            self._seed()
            result["warmup_orders"] = self._warmup()
            result["phase1"] = self._phase1()
            result["phase2"] = self._phase2() if self.args.post_seconds > 0 else None
            result.update(self._drained())
        except BenchError as exc:
            note(f"{self.label} failed: {exc}")
            result["error"] = str(exc)
        finally:
            self._stop()
        result["wall_s"] = round(time.monotonic() - started, 2)
        return result

    # -- processes ------------------------------------------------------------------------------

    def _start(self) -> None:
        bench, args = self.bench, self.args
        remove_sqlite(bench.state_path)  # a fresh file at the same path for each system and round
        bench.gateway_port = free_port()
        env: dict[str, str] = {}
        if self.system.kind == "conveyor":
            state_url = None
            if self.postgres is not None:
                self.database = self.label.replace("-", "_")
                state_url = self.postgres.fresh_database(self.database)
                env["CONVEYOR_STATE_URL"] = state_url
            bench.write_config(
                flows=args.flows,
                log_level=args.log_level,
                extra=f'[admin]\napi_key = "{ADMIN_KEY}"\n',
                state_url=state_url,
            )
            worker_module, gateway_argv = "actors", ["-m", "gateway"]
        else:
            # The table, and the file's WAL mode, made once before the processes start (a user's migration):
            # processes that all create a new file at once can find it locked while one switches it to WAL.
            KeyValueStore(bench.state_path)
            env[GLUE_STATE_ENV] = str(bench.state_path)
            worker_module = "bench.glue.actors"
            gateway_argv = ["-m", "bench.glue.app", "--port", str(bench.gateway_port)]
            gateway_argv += ["--log-level", args.log_level.lower()]
        note(f"{self.label}: starting dramatiq {worker_module} -p {args.processes} -t {args.threads} and the gateway")
        workers = self.names["workers"]
        bench.start_workers(workers, worker_module, processes=args.processes, threads=args.threads, env=env)
        bench.start(self.names["gateway"], *gateway_argv, env=env)
        self.url = f"http://{HOST}:{bench.gateway_port}"
        bench.wait_http(self.names["gateway"], f"{self.url}/health", timeout=60)
        self.reader = self._reader()

    def _reader(self) -> StateReader:
        if self.system.kind == "glue":
            return SqliteReader(self.bench.state_path, GLUE_TABLE)
        if self.postgres is None:
            return SqliteReader(self.bench.state_path, CONVEYOR_TABLE)
        return RuntimeStoreReader(self.bench.config_path)

    def _stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        for name in reversed(list(self.names.values())):
            self.bench.stop(name)
        keep_as = self.bench.base / f"{self.label}.state.db" if self.args.keep else None
        remove_sqlite(self.bench.state_path, keep_as=keep_as)
        if self.postgres is not None and self.database is not None and not self.args.keep:
            self.postgres.drop_database(self.database)

    def _check_alive(self) -> None:
        for name in self.names.values():
            self.bench.check_alive(name)
        if time.monotonic() > self.deadline:
            raise BenchError(f"{self.label} ran past --timeout ({self.args.timeout:.0f}s)")

    # -- phases -------------------------------------------------------------------------------

    def _seed(self) -> None:
        products = _products()
        if self.system.kind == "conveyor":
            for product in products:
                response = httpx.put(f"{self.url}/inventory/{product}", json={"stock": INITIAL_STOCK}, timeout=30)
                if response.status_code != 200:
                    raise BenchError(f"PUT /inventory/{product} answered {response.status_code}: {response.text[:300]}")
        else:
            store = KeyValueStore(self.bench.state_path)
            for product in products:
                store.set("inventory", product, {"productId": product, "stock": INITIAL_STOCK, "lastUpdated": ""})
        assert self.reader is not None
        for product in products:
            if self.reader.stock(product) != INITIAL_STOCK:
                raise BenchError(f"{self.label}: the stock of {product} did not read back as {INITIAL_STOCK}")

    def _warmup(self) -> int:
        """POST ``--warmup`` orders and wait for their notifications: first connections, imports, caches."""
        if not self.args.warmup:
            return 0
        note(f"{self.label}: warm-up, {self.args.warmup} orders")
        posted = asyncio.run(
            post_orders(self.url, self.args.concurrency, orders=self.args.warmup, deadline=self.deadline)
        )
        self.accepted += posted.ok
        self._wait_notifications(self.accepted)
        return posted.ok

    def _phase1(self) -> dict[str, Any]:
        args = self.args
        self._reset_loop_lag()
        meter = CpuMeter(self)
        note(f"{self.label}: phase 1, {args.orders} orders, {args.concurrency} at a time")
        started = time.monotonic()
        posted = asyncio.run(post_orders(self.url, args.concurrency, orders=args.orders, deadline=self.deadline))
        post_done = time.monotonic()
        self.accepted += posted.ok
        self._wait_notifications(self.accepted)
        finished = time.monotonic()
        cpu = meter.used()
        total_s, post_s = finished - started, post_done - started
        return {
            "orders": posted.ok,
            "post_errors": posted.failed,
            "orders_per_s": round(posted.ok / total_s, 1),
            "total_s": round(total_s, 2),
            "post_requests_per_s": round(posted.requests / post_s, 1),
            "post_s": round(post_s, 2),
            "post_p50_ms": _ms(percentile(posted.latencies, 0.50)),
            "post_p99_ms": _ms(percentile(posted.latencies, 0.99)),
            "drain_after_posts_s": round(finished - post_done, 2),
            # CPU time per order, from the first POST to the last notification, by process.
            "cpu_ms_per_order": {name: round(seconds / max(1, posted.ok) * 1000, 3) for name, seconds in cpu.items()},
            "loop_lag_ms": self._loop_lag(),
            "response_fields": posted.fields,
        }

    def _phase2(self) -> dict[str, Any]:
        """``--post-seconds`` of POSTs from wrk (as light a client as there is), the workers running."""
        args = self.args
        assert self.reader is not None
        self._reset_loop_lag()
        meter = CpuMeter(self)
        note(f"{self.label}: phase 2, {args.post_seconds:g}s of POSTs from wrk, {args.concurrency} connections")
        started = time.monotonic()
        assert self.wrk is not None
        found = run_wrk(self.wrk, self.url, max(1, round(args.post_seconds)), args.concurrency, threads=2)
        post_s = time.monotonic() - started
        cpu = meter.used()
        # wrk cuts the requests in flight when it stops: count the orders the system stored instead.
        before, self.accepted = self.accepted, self.reader.orders()
        return {
            "orders": self.accepted - before,
            "post_errors": found["non_2xx"] + found["socket_errors"],
            "requests_per_s": found["requests_per_s"],
            "p50_ms": found["p50_ms"],
            "p99_ms": found["p99_ms"],
            "s": round(post_s, 2),
            # The gateway's CPU per request over the POST window (the workers meanwhile work through a backlog).
            "gateway_cpu_us_per_request": round(cpu["gateway"] / max(1, found["requests"]) * 1e6, 1),
            "loop_lag_ms": self._loop_lag(),
        }

    def _drained(self) -> dict[str, Any]:
        """Wait for every notification and empty queues, then compare each product's stock with the orders."""
        assert self.reader is not None
        started = time.monotonic()
        self._wait_notifications(self.accepted)
        self._wait_queues_empty()
        note(f"{self.label}: drained {time.monotonic() - started:.1f}s after the last POST")
        notifications = self.reader.notifications()
        failed = self.reader.failed_notifications()
        completed = notifications - failed
        stock: dict[str, Any] = {}
        lost = 0
        for product, quantity in _products().items():
            expected = INITIAL_STOCK - quantity * completed
            actual = self.reader.stock(product)
            if actual is None:
                raise BenchError(f"{self.label}: no stock for {product} after the run")
            # Positive: the stock was taken fewer times than the orders asked (negative: more often).
            lost_here = (actual - expected) / quantity
            stock[product] = {"expected": expected, "actual": actual, "lost_decrements": lost_here}
            lost += int(lost_here)
        return {
            "accepted_orders": self.accepted,
            "notifications": notifications,
            "failed_orders": failed,
            "decrements": completed * len(ITEMS),
            "lost_decrements": lost,
            "stock": stock,
        }

    def _wait_notifications(self, expected: int) -> None:
        assert self.reader is not None
        while (stored := self.reader.notifications()) < expected:
            self._check_alive()
            if time.monotonic() > self.deadline:
                raise BenchError(f"{self.label}: {stored} of {expected} notifications stored before --timeout")
            time.sleep(0.2)

    def _wait_queues_empty(self) -> None:
        """Until the system's queues hold no message, ready or unacknowledged (``rabbitmqctl list_queues``)."""
        node = self.bench.broker_nodes[0]
        wanted = set(self.system.queues)
        while True:
            self._check_alive()
            listing = node.ctl("list_queues", "-q", "--no-table-headers", "name", "messages", timeout=60)
            if listing.returncode != 0:
                raise BenchError(f"rabbitmqctl list_queues failed: {listing.stderr.strip()[:300]}")
            held = {}
            for line in listing.stdout.splitlines():
                name, _, count = line.rpartition("\t")
                if name in wanted and count.strip().isdigit() and int(count):
                    held[name] = int(count)
            if not held:
                return
            note(f"{self.label}: queues still hold {held}")
            time.sleep(0.5)

    # -- Conveyor's loop lag ------------------------------------------------------------------

    def _admin(self, method: str, path: str) -> httpx.Response | None:
        if self.system.kind != "conveyor":
            return None
        headers = {"X-API-Key": ADMIN_KEY}
        try:
            return httpx.request(method, f"{self.url}/_admin{path}", headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            note(f"{self.label}: {method} /_admin{path}: {exc}")
            return None

    def _reset_loop_lag(self) -> None:
        self._admin("POST", "/loop/reset")

    def _loop_lag(self) -> dict[str, Any] | None:
        """From ``GET /_admin/loop``, in ms: ``{"max", "p99", "samples", "blocked_max", "starved_max"}``, or None.

        ``blocked`` is lag the loop's own code caused; ``starved``, lag from waiting for a core.
        """
        response = self._admin("GET", "/loop")
        if response is None:
            return None
        if response.status_code != 200:
            note(f"{self.label}: no loop lag (GET /_admin/loop answered {response.status_code})")
            return None
        try:
            figures = response.json()
            return {
                **figures["lag_ms"],
                "blocked_max": figures["blocked_ms"]["max"],
                "blocked_p99": figures["blocked_ms"]["p99"],
                "starved_max": figures["starved_ms"]["max"],
            }
        except (ValueError, KeyError, TypeError):
            note(f"{self.label}: GET /_admin/loop answered {response.text[:200]!r}")
            return None


def _products() -> dict[str, int]:
    """Each product of the order and the quantity one order takes of it."""
    return {item["productId"]: item["quantity"] for item in ITEMS}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
