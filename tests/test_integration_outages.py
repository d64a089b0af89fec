"""RabbitMQ going away, idle connections and long delays, on a RabbitMQ node of this module's own."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pika
import pytest

from devtools.localnode import LocalNode, free_node_ports
from devtools.processes import wait_for
from tests.helpers import step_queue
from tests.system import System

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    port, management_port = free_node_ports()
    own = LocalNode(tmp_path_factory.mktemp("outage-node"), port=port, management_port=management_port, name="outage")
    own.start()
    yield own
    own.stop()


def queue_info(node: LocalNode, queue: str) -> dict:
    request = urllib.request.Request(
        f"{node.management_url}/api/queues/%2F/{queue}",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def queue_counts(node: LocalNode, queue: str) -> tuple[int, int]:
    """(ready messages, consumers), straight from RabbitMQ."""
    connection = pika.BlockingConnection(pika.URLParameters(node.url))
    try:
        method = connection.channel().queue_declare(queue, passive=True).method
        return method.message_count, method.consumer_count
    finally:
        connection.close()


ORDER = {"customerId": "c-outage", "items": [{"productId": "p", "quantity": 1, "price": 2.0}]}


def test_broker_down_means_503_and_nothing_stored_then_recovery(node, tmp_path):
    system = System(tmp_path, node.url, extra_config="")
    try:
        system.start_workers(processes=1, threads=2)
        system.start_gateway()
        assert system.http.post("/orders", json=ORDER).status_code == 200

        node.stop()
        before = len(system.state.list("orders"))
        response = system.http.post("/orders", json=ORDER)
        assert response.status_code == 503
        assert "did not confirm" in response.json()["error"]
        assert len(system.state.list("orders")) == before  # no order left pending forever
        assert system.http.get("/health").json()["rabbitmq"].startswith("unreachable")

        node.start()
        recovered = wait_for(
            lambda: (r := system.http.post("/orders", json=ORDER)).status_code == 200 and r, timeout=30
        )
        order_id = recovered.json()["orderId"]
        wait_for(lambda: system.http.get(f"/orders/{order_id}").json()["status"] == "completed", timeout=60)
    finally:
        system.stop_all()


def test_gateway_and_scheduler_survive_idle_connections(node, tmp_path):
    # A 1 s heartbeat: RabbitMQ drops a connection that stays silent for a few seconds.
    system = System(tmp_path, node.url, extra_config='[steps.TestTick]\ncron = "*/4 * * * * *"\n')
    system.config_path.write_text(system.config_path.read_text().replace("heartbeat = 10", "heartbeat = 1"))
    try:
        system.start_workers(processes=1, threads=2)
        system.start_gateway()
        system.start("scheduler", "-m", "scheduler")
        assert system.http.post("/orders", json=ORDER).status_code == 200
        time.sleep(9)  # idle: several missed heartbeats' worth
        response = system.http.post("/orders", json=ORDER)
        assert response.status_code == 200
        wait_for(lambda: (system.state.get("ticks", "count") or {}).get("n", 0) >= 3, timeout=30)
    finally:
        system.stop_all()


def test_delayed_message_waits_in_rabbitmq_not_in_a_worker_and_survives_a_restart(node, tmp_path):
    system = System(tmp_path, node.url)
    try:
        system.start_workers(processes=1, threads=2)
        system.start_gateway()
        key = uuid.uuid4().hex
        sent = time.time()
        response = system.http.post("/_test/enqueue/test.quick", json={"data": {"id": key}, "delay": 8})
        assert response.status_code == 202

        # It waits in a TTL queue nobody consumes: no worker holds it, so RabbitMQ's
        # consumer_timeout cannot cut it short, and the step's queue has nothing unacknowledged.
        waiting = queue_counts(node, f"{step_queue('QuickProbe')}.delay.0000008000ms")
        assert waiting == (1, 0)  # one message, no consumer
        assert queue_info(node, f"{step_queue('QuickProbe')}.delay.0000008000ms")["arguments"][
            "x-dead-letter-routing-key"
        ] == step_queue("QuickProbe")
        assert queue_counts(node, step_queue("QuickProbe"))[0] == 0  # nothing waiting (or held) in the step's queue

        system.stop("workers")  # a worker restart while it waits
        system.start_workers(processes=1, threads=2)

        done = wait_for(lambda: system.state.get("quick", key), timeout=30)
        assert done["at"] - sent >= 8
        assert done["attempt"] == 1
        time.sleep(1)
        assert system.state.get("quick", key) == done  # ran once
    finally:
        system.stop_all()
