"""Several RabbitMQ nodes in [broker] url: parsing, each process's order, and failing over to a node that answers."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pika
import pytest
from dramatiq.errors import ConnectionClosed

from conveyor.config import load_config, parse_config
from conveyor.declare.flows import load_flows
from conveyor.errors import BrokerUnavailableError, ConfigError
from conveyor.messaging.async_publisher import AsyncPublisher
from conveyor.messaging.broker import ENQUEUE_PAUSES, ConveyorRabbitmqBroker, build_broker
from conveyor.messaging.connections import node_parameters, own_connection, queue_depth
from conveyor.ops.management import ManagementAPI
from conveyor.ops.queue_stats import queue_stats
from conveyor.runtime import Runtime
from devtools.localnode import LocalNode
from devtools.processes import ROOT, free_port, wait_for
from tests.flow_support import own_vhost


def dead_url(user: str = "guest:guest", vhost: str = "%2F") -> str:
    """An AMQP URL of a port nothing listens on: a node that is down."""
    return f"amqp://{user}@127.0.0.1:{free_port()}/{vhost}"


# -- parsing ---------------------------------------------------------------------------------------


def test_url_may_be_a_list_of_nodes_in_config_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[broker]\nurl = ["amqp://a:5672/%2F", "amqp://b:5672/%2F"]\n'
        'management_url = ["http://a:15672", "http://b:15672"]\n'
    )
    broker = load_config(path).broker
    assert broker.urls == ["amqp://a:5672/%2F", "amqp://b:5672/%2F"]
    assert broker.management_urls == ["http://a:15672", "http://b:15672"]
    assert parse_config({}).broker.urls == ["amqp://guest:guest@127.0.0.1:5672/%2F"]  # one URL stays one node


def test_environment_may_name_several_nodes_comma_separated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", "amqp://u:p@a:5672/%2F, amqp://u:p@b:5672/%2F,amqp://u:p@c:5672/%2F")
    (tmp_path / "config.toml").write_text('[broker]\nurl = "amqp://ignored/%2F"\n')
    assert load_config(tmp_path / "config.toml").broker.urls == [
        "amqp://u:p@a:5672/%2F",
        "amqp://u:p@b:5672/%2F",
        "amqp://u:p@c:5672/%2F",
    ]


def test_an_empty_list_of_nodes_is_refused() -> None:
    with pytest.raises(ConfigError, match="broker.url: expected a URL or a non-empty list of URLs"):
        parse_config({"broker": {"url": []}})


def test_every_node_gets_the_heartbeat(tmp_path: Path) -> None:
    urls = ["amqp://guest:guest@127.0.0.1:5001/%2F", "amqp://guest:guest@127.0.0.1:5002/%2F?heartbeat=7"]
    config = parse_config({"broker": {"url": urls, "heartbeat": 30}, "state": {"path": str(tmp_path / "s.db")}})
    broker = build_broker(config, [], {})
    assert isinstance(broker, ConveyorRabbitmqBroker)
    heartbeats = {p.port: p.heartbeat for p in node_parameters(broker)}
    assert heartbeats == {5001: 30, 5002: 7}  # a URL's own setting wins
    assert {p.blocked_connection_timeout for p in node_parameters(broker)} == {30}


ORDER_OF_THIS_PROCESS = """
from conveyor.config import parse_config
from conveyor.messaging.broker import build_broker
from conveyor.messaging.connections import node_parameters
urls = [f"amqp://guest:guest@127.0.0.1:{port}/%2F" for port in (5001, 5002, 5003, 5004)]
print(" ".join(str(p.port) for p in node_parameters(build_broker(parse_config({"broker": {"url": urls}}), [], {}))))
"""


def test_each_process_tries_the_nodes_in_an_order_of_its_own() -> None:
    orders = [
        subprocess.run(
            [sys.executable, "-c", ORDER_OF_THIS_PROCESS], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(6)
    ]
    print("orders:", orders)
    assert all(sorted(order) == ["5001", "5002", "5003", "5004"] for order in orders)  # every node kept
    assert len({tuple(order) for order in orders}) > 1  # 6 processes in one order: 1 in 24^5


# -- failing over ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_url(rabbitmq: LocalNode) -> Iterator[str]:
    """A virtual host of this module's own on the suite's node."""
    with own_vhost(rabbitmq, "nodes") as url:
        yield url


@pytest.fixture(scope="module")
def vhost(live_url: str) -> str:
    return live_url.rsplit("/", 1)[1]


def test_a_broker_whose_first_node_is_down_publishes_and_consumes_through_the_next(live_url: str) -> None:
    broker = ConveyorRabbitmqBroker(url=[dead_url(), live_url], confirm_delivery=True)
    queue = f"failover-{uuid.uuid4().hex[:6]}"

    @dramatiq.actor(broker=broker, queue_name=queue)
    def noted(value: str) -> None: ...

    try:
        noted.send("through the second node")
        consumer = broker.consume(queue, timeout=5000)
        received = next(message for message in consumer if message is not None)
        consumer.ack(received)
        consumer.close()
        assert received.args == ("through the second node",)
    finally:
        broker.close()


def test_own_connection_and_stats_work_with_the_first_node_down(
    rabbitmq: LocalNode, live_url: str, vhost: str, tmp_path: Path
) -> None:
    config = parse_config(
        {
            "broker": {
                "url": [dead_url(vhost=vhost), live_url],
                "management_url": [f"http://127.0.0.1:{free_port()}", rabbitmq.management_url],
            },
            "state": {"path": str(tmp_path / "state.db")},
        }
    )
    runtime = Runtime(config, load_flows(["tests.flows"]))
    try:
        broker = runtime.broker
        assert isinstance(broker, ConveyorRabbitmqBroker)
        broker.parameters = sorted(node_parameters(broker), key=lambda p: p.port == rabbitmq.port)  # dead one first
        runtime.declare_queues()
        with own_connection(broker) as connection:
            assert queue_depth(connection.channel(), runtime.actors["QuickProbe"].queue_name) == 0
        # The management API lists a new queue within its statistics interval (5 s).
        wait_for(lambda: {s.step: s for s in queue_stats(runtime)}["QuickProbe"].declared, 30, what="QuickProbe")
    finally:
        runtime.close()


def test_no_node_reachable_names_every_node_without_credentials() -> None:
    urls = [dead_url("ops:hunter2"), dead_url("ops:hunter2")]
    broker = ConveyorRabbitmqBroker(url=urls, confirm_delivery=True)
    with pytest.raises(BrokerUnavailableError) as caught, own_connection(broker):
        pass
    message = str(caught.value)
    for parameters in node_parameters(broker):
        assert f"127.0.0.1:{parameters.port}/" in message
    assert "hunter2" not in message


def test_management_api_tries_the_next_node(rabbitmq: LocalNode, vhost: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    api = ManagementAPI([dead, rabbitmq.management_url], f"amqp://guest:guest@127.0.0.1/{vhost}")
    assert isinstance(api.queues(), dict)
    with pytest.raises(BrokerUnavailableError) as caught:
        ManagementAPI([dead, f"http://127.0.0.1:{free_port()}"], "amqp://ops:hunter2@x/").queues()
    assert dead in str(caught.value) and "hunter2" not in str(caught.value)


def test_the_gateway_publisher_connects_to_the_next_node(live_url: str) -> None:
    queue = f"async-{uuid.uuid4().hex[:6]}"
    connection = pika.BlockingConnection(pika.URLParameters(live_url))
    connection.channel().queue_declare(queue, durable=True)

    async def publish() -> None:
        publisher = AsyncPublisher([pika.URLParameters(dead_url()), pika.URLParameters(live_url)])
        try:
            await publisher.publish(queue, b"hello")
        finally:
            await publisher.close()

    try:
        asyncio.run(publish())
        assert queue_depth(connection.channel(), queue) == 1
    finally:
        connection.channel().queue_delete(queue)
        connection.close()


# -- enqueue backoff -------------------------------------------------------------------------------


def test_enqueue_to_a_stopped_node_backs_off_for_seconds_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    broker = ConveyorRabbitmqBroker(url=[dead_url(), dead_url()], confirm_delivery=True)

    @dramatiq.actor(broker=broker, queue_name="nowhere")
    def nowhere() -> None: ...

    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="conveyor.broker"), pytest.raises(ConnectionClosed) as caught:
        nowhere.send()
    print(f"gave up after {time.monotonic() - started:.2f} s")
    retries = [r for r in caplog.records if r.getMessage().startswith("Enqueue attempt")]
    pauses = [float(r.getMessage().rsplit(" ", 1)[1].rstrip("s")) for r in retries]
    assert len(retries) == len(ENQUEUE_PAUSES)  # 7 attempts: one, then one after each pause
    assert sum(pauses) >= 0.8 * sum(ENQUEUE_PAUSES) > 2.5  # seconds, not Dramatiq's milliseconds
    assert pauses == sorted(pauses)
    assert "after 7 attempts" in str(caught.value)
    assert all(f":{p.port}/" in str(caught.value) for p in node_parameters(broker))


class FlakyPublisher:
    """Stands in for the gateway's AsyncPublisher: fails ``failures`` times with ``error``, then takes the message."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.attempts: list[str] = []

    async def declare(self, queue: str, arguments: dict) -> None:
        pass

    async def publish(self, routing_key: str, body: bytes, **_: object) -> None:
        self.attempts.append(routing_key)
        if len(self.attempts) <= self.failures:
            raise self.error


def test_the_gateway_publisher_waits_out_an_interrupted_publish_but_not_a_refusal(tmp_path, monkeypatch):
    from conveyor import Registry, queue, step
    from conveyor.errors import PublishError
    from conveyor.messaging import publisher as publisher_module
    from conveyor.messaging.async_publisher import PublishInterrupted
    from tests.helpers import memory_runtime

    registry = Registry()
    step(name="Work", triggers=[queue("work")], registry=registry)(lambda data, ctx: None)
    runtime = memory_runtime(tmp_path, registry)
    monkeypatch.setattr(publisher_module, "enqueue_pauses", lambda: [0.0] * len(ENQUEUE_PAUSES))

    async def publish_with(flaky: FlakyPublisher) -> list[str]:
        runtime.publisher.attach(flaky, asyncio.get_running_loop())  # type: ignore[arg-type]
        try:
            return await runtime.publisher.publish_async("work", {"n": 1})
        finally:
            runtime.publisher.detach()

    try:
        # A node lost, then a nack during the election: taken on the third try.
        flaky = FlakyPublisher(2, PublishInterrupted("connection to RabbitMQ lost"))
        assert len(asyncio.run(publish_with(flaky))) == 1 and len(flaky.attempts) == 3
        # Interrupted on every try: the error once the pauses are spent (the request's 503).
        always = FlakyPublisher(99, PublishInterrupted("RabbitMQ refused the message (nack)"))
        with pytest.raises(PublishInterrupted):
            asyncio.run(publish_with(always))
        assert len(always.attempts) == len(ENQUEUE_PAUSES) + 1
        # A refusal no retry can fix (no such queue) fails at once.
        unroutable = FlakyPublisher(99, PublishError("RabbitMQ could not route the message"))
        with pytest.raises(PublishError):
            asyncio.run(publish_with(unroutable))
        assert len(unroutable.attempts) == 1
    finally:
        runtime.close()
