"""The order flow with its state on a real PostgreSQL server: end to end, through a restart, and with no server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.processes import free_port
from tests.system import System, wait_for

ORDER = {"customerId": "c-1", "items": [{"productId": "pg-widget", "quantity": 2, "price": 5.0}]}
STOCK = 100_000


@pytest.fixture(scope="module")
def pg_system(rabbitmq, postgres, tmp_path_factory) -> Iterator[System]:
    system = System(tmp_path_factory.mktemp("pg-system"), rabbitmq.url, flows=["flows.orders"], state_url=postgres.url)
    system.start_workers(processes=2, threads=4)
    system.start_gateway()
    assert system.http.put("/inventory/pg-widget", json={"stock": STOCK}).status_code == 200
    yield system
    system.stop_all()


def _post_orders(
    system: System, count: int, threads: int = 8, until: threading.Event | None = None
) -> tuple[list[str], dict[int, int]]:
    """POST ``count`` orders (or, with ``until``, until it is set) from ``threads`` clients.

    Returns the ids accepted, and how many answers of each other status came back.
    """
    accepted: list[str] = []
    refused: dict[int, int] = {}
    lock = threading.Lock()
    remaining = iter(range(count))

    def client() -> None:
        with httpx.Client(base_url=system.url, timeout=30) as http:
            for _ in remaining:
                if until is not None and until.is_set():
                    return
                response = http.post("/orders", json=ORDER)
                with lock:
                    if response.status_code == 200:
                        accepted.append(response.json()["orderId"])
                    else:
                        refused[response.status_code] = refused.get(response.status_code, 0) + 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return accepted, refused


def _completed(system: System, ids: list[str]) -> int:
    return sum(1 for order_id in ids if (system.state.get("orders", order_id) or {}).get("status") == "completed")


def _stock(system: System) -> int:
    return system.state.get("inventory", "pg-widget")["stock"]


def test_orders_complete_with_exact_stock(pg_system):
    before = _stock(pg_system)
    accepted, refused = _post_orders(pg_system, 120)
    assert refused == {} and len(accepted) == 120
    wait_for(lambda: _completed(pg_system, accepted) == 120, 60, what="120 completed orders")
    wait_for(lambda: _stock(pg_system) == before - 2 * 120, 60, what="the stock to drop by 240")
    notifications = {n["orderId"] for n in pg_system.state.list("notifications")}
    assert set(accepted) <= notifications


def test_a_server_restart_under_load_loses_no_accepted_order(pg_system, postgres):
    before = _stock(pg_system)
    outcome: list[tuple[list[str], dict[int, int]]] = []
    stop = threading.Event()
    posting = threading.Thread(target=lambda: outcome.append(_post_orders(pg_system, 100_000, until=stop)))
    posting.start()
    time.sleep(1.5)
    server_before = postgres.pid
    postgres.restart("immediate")  # in the middle of the POSTs and of the workers' transactions
    assert postgres.pid != server_before
    time.sleep(2.0)
    stop.set()
    posting.join(180)
    accepted, refused = outcome[0]
    assert set(refused) <= {503}, f"only 503s while the server restarts, got {refused}"
    assert len(accepted) >= 100
    wait_for(lambda: _completed(pg_system, accepted) == len(accepted), 120, what="every accepted order to complete")
    # Every accepted order took its stock exactly once: nothing committed was lost, nothing applied twice.
    wait_for(lambda: _stock(pg_system) == before - 2 * len(accepted), 60, what="the stock to match the orders")
    print(f"\n{len(accepted)} accepted, refused {refused} across the restart")


def test_no_server_at_start_says_so_in_one_line_and_health_is_503(rabbitmq, tmp_path):
    port = free_port()
    url = f"postgresql://conveyor:s3cret-word@127.0.0.1:{port}/conveyor"
    system = System(tmp_path, rabbitmq.url, flows=["flows.orders"], state_url=url)
    try:
        system.start_gateway()
        system.start_workers(processes=1, threads=2)
        health = system.http.get("/health")
        assert health.status_code == 503
        assert health.json()["state"].startswith("unreachable")
        response = system.http.post("/orders", json=ORDER)
        assert response.status_code == 503
        assert response.json()["error"] == "The state store is unreachable. Try again shortly."
        for name in ("gateway", "workers"):
            log = system.log(name)
            lines = [line for line in log.splitlines() if "The state store is unreachable" in line]
            assert len(lines) == 1, log
            assert f"postgresql://conveyor@127.0.0.1:{port}/conveyor" in lines[0]
            assert "s3cret" not in log
            assert "Traceback" not in log
    finally:
        system.stop_all()
