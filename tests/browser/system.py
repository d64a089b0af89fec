"""The system the console's browser tests drive: real gateway and worker processes on the suite's RabbitMQ node.

The shipped flows only, ProcessOrder retried once after 100 ms (so an order fails for good in well
under a second), tracing on (the default; the console reads ``var/traces.db`` under the base).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.system import System, free_port, wait_for

#: ProcessOrder gives up quickly, so a broken order is dead-lettered within a second.
FAST_FAILURES = """
[steps.ProcessOrder]
max_retries = 1
retry_delay = 100
backoff = "fixed"
"""
#: A stock record ProcessOrder cannot read (its stock check raises AttributeError), as tests/test_replay_repairs.py.
BROKEN_STOCK = "not an inventory record"
CONSOLE = "/_console"


def start_system(base: Path, broker_url: str, management_url: str) -> System:
    """Workers (1 process, 4 threads) and a gateway on loopback, started and ready; the queues page
    reads RabbitMQ's management API at ``management_url``."""
    system = System(base, broker_url, extra_config=FAST_FAILURES, flows=["flows"])
    text = system.config_path.read_text()
    # [broker] is written by devtools/processes.py and a TOML table cannot be opened twice.
    system.config_path.write_text(text.replace("[broker]\n", f'[broker]\nmanagement_url = "{management_url}"\n', 1))
    system.start_workers(processes=1, threads=4)
    system.start_gateway()
    return system


def fixed_stock(product: str) -> dict[str, Any]:
    return {"productId": product, "stock": 10, "lastUpdated": "2026-12-01T00:00:00.000Z"}


def order_of(product: str, quantity: int = 2) -> dict[str, Any]:
    return {"customerId": "customer-browser", "items": [{"productId": product, "quantity": quantity, "price": 3}]}


def trace_json(system: System, trace_id: str) -> dict[str, Any] | None:
    """The console API's view of a trace, or ``None`` while the store holds none of it."""
    answer = system.http.get(f"{CONSOLE}/api/traces/{trace_id}")
    if answer.status_code != 200:
        return None
    trace: dict[str, Any] = answer.json()
    return trace


def spans_of(system: System, trace_id: str) -> list[dict[str, Any]]:
    trace = trace_json(system, trace_id)
    return [] if trace is None else list(trace["spanList"])


def wait_span(system: System, trace_id: str, *, what: str, timeout: float = 30, **wanted: Any) -> dict[str, Any]:
    """The first span of the trace whose fields hold ``wanted`` (e.g. ``step="X", status="ok"``), once stored."""

    def found() -> dict[str, Any] | None:
        matching = [s for s in spans_of(system, trace_id) if all(s.get(k) == v for k, v in wanted.items())]
        return matching[0] if matching else None

    span = wait_for(found, timeout, what=what)
    assert span is not None  # wait_for returns only a truthy value
    return span


def order_status(system: System, order_id: str) -> str | None:
    answer = system.http.get(f"/orders/{order_id}")
    return str(answer.json()["status"]) if answer.status_code == 200 else None


def fail_an_order(system: System, product: str) -> tuple[str, str]:
    """POST an order whose ProcessOrder fails past its retries; returns (order id, trace id) once it is "failed"."""
    system.state.set("inventory", product, BROKEN_STOCK)
    answer = system.http.post("/orders", json=order_of(product))
    assert answer.status_code == 200, answer.text
    order_id, trace_id = answer.json()["orderId"], answer.headers["x-request-id"]
    wait_for(lambda: order_status(system, order_id) == "failed", 30, what=f"order {order_id} to be marked failed")
    wait_span(system, trace_id, step="ProcessOrder", status="dead", what="ProcessOrder's dead span in the trace")
    return order_id, trace_id


def start_open_gateway(system: System, name: str, *, api_key: str | None) -> str:
    """A second gateway of ``system`` listening on 0.0.0.0 (so not on loopback), with ``api_key`` from the
    environment (CONVEYOR_ADMIN_KEY) or none; returns its URL through 127.0.0.1."""
    port = free_port()
    text = system.config_path.read_text()
    text, replaced = re.subn(r'(?m)^host = ".*"\nport = \d+$', f'host = "0.0.0.0"\nport = {port}', text)
    assert replaced == 1, "the [gateway] lines devtools/processes.py writes have changed"
    # Its own metrics folder: a gateway clears the folder when it starts.
    config = system.base / f"{name}.toml"
    config.write_text(text + f'\n[metrics]\npath = "var/metrics-{name}"\n')
    env = {"CONVEYOR_CONFIG": str(config), "CONVEYOR_ADMIN_KEY": api_key or ""}
    system.processes.start(name, "-m", "gateway", env=env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code in (200, 503)
        except httpx.TransportError:
            return False

    wait_for(up, 60, what=f"the {name} gateway's /health")
    return url
