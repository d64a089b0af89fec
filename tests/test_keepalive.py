"""The keeper of idle publishing connections (conveyor.messaging.keepalive), on a real RabbitMQ node."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from conveyor.messaging.broker import with_heartbeat
from conveyor.messaging.keepalive import GuardedConnection, KeepAliveRabbitmqBroker
from devtools.processes import wait_for
from tests.system import System

#: Seconds; RabbitMQ closes a connection that misses two heartbeats, so 4 s of silence ends it.
HEARTBEAT = 2


def _broker(cls: type[RabbitmqBroker], url: str, heartbeat: int = HEARTBEAT) -> Any:
    broker = cls(url=with_heartbeat(url, heartbeat), confirm_delivery=True, middleware=[])
    queue = f"keepalive-{uuid.uuid4().hex[:8]}"
    dramatiq.Actor(lambda: None, broker=broker, actor_name=queue, queue_name=queue, priority=0, options={})
    broker.test_queue = queue
    return broker


@pytest.fixture
def kept(rabbitmq: Any) -> Iterator[KeepAliveRabbitmqBroker]:
    broker = _broker(KeepAliveRabbitmqBroker, rabbitmq.url)
    yield broker
    broker.close()


class Publisher:
    """A thread that publishes whenever asked, and otherwise sits idle, holding its connection."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.connections: list[Any] = []
        self._asks: list[tuple[Callable[[], Any], threading.Event]] = []
        self._wake = threading.Condition()
        self._done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def publish(self) -> Any:
        """Publish one message from the thread; returns the thread's connection afterwards."""

        def send() -> Any:
            self.broker.enqueue(
                dramatiq.Message(queue_name=self.broker.test_queue, actor_name="x", args=(), kwargs={}, options={})
            )
            return self.broker.connection

        return self.call(send)

    def call(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` in the thread; its result, or its exception raised here."""
        done = threading.Event()
        result: list[Any] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                result.append(work())
            except Exception as exc:
                errors.append(exc)

        with self._wake:
            self._asks.append((run, done))
            self._wake.notify()
        assert done.wait(30), "the publishing thread did not answer"
        if errors:
            raise errors[0]
        return result[0]

    def stop(self) -> None:
        with self._wake:
            self._done = True
            self._wake.notify()
        self.thread.join(10)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._asks and not self._done:
                    self._wake.wait()
                if self._done:
                    return
                work, done = self._asks.pop(0)
            work()
            done.set()


def test_an_idle_publishing_connection_outlives_several_heartbeat_timeouts(rabbitmq: Any, kept: Any) -> None:
    plain = _broker(RabbitmqBroker, rabbitmq.url)
    kept_thread, plain_thread = Publisher(kept), Publisher(plain)
    try:
        kept_first, plain_first = kept_thread.publish(), plain_thread.publish()
        assert isinstance(kept_first, GuardedConnection)
        time.sleep(HEARTBEAT * 6)  # three heartbeat timeouts with nothing published

        # Dramatiq's plain broker lost its silent connection: RabbitMQ closed it.
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            plain_thread.call(lambda: plain_first.process_data_events(0))
        # The kept one is still the thread's, open, and publishes without reconnecting.
        assert kept_first.is_open
        assert kept_thread.publish() is kept_first
    finally:
        kept_thread.stop()
        plain_thread.stop()
        plain.close()


def test_a_connection_in_use_is_left_to_its_thread(kept: Any) -> None:
    thread = Publisher(kept)
    try:
        connection = thread.publish()
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with kept.holding():
                held.set()
                release.wait(10)

        worker = threading.Thread(target=lambda: thread.call(hold), daemon=True)
        worker.start()
        assert held.wait(10)
        assert connection in kept.connections
        assert kept.keeper.tick() == 0  # its lock is taken: the keeper does not touch it
        release.set()
        worker.join(10)
        assert kept.keeper.tick() == 1
    finally:
        thread.stop()


def test_the_connection_of_a_thread_that_ended_is_closed_and_forgotten(kept: Any) -> None:
    thread = Publisher(kept)
    connection = thread.publish()
    thread.stop()
    assert connection in kept.connections

    kept.keeper.tick()

    assert connection not in kept.connections
    assert not connection.is_open
    assert not [channel for channel in kept.channels if channel.connection is connection]


def test_a_consumer_thread_keeps_no_publishing_connection(kept: Any) -> None:
    made: list[Any] = []

    def consume() -> None:
        consumer = kept.consume(kept.test_queue, timeout=100)
        made.append(getattr(kept.state, "connection", None))
        consumer.close()

    thread = threading.Thread(target=consume)
    thread.start()
    thread.join(30)
    # Declaring the queue opened one, for a moment; the consumer reads on its own connection.
    assert made == [None]
    assert not kept.connections


def test_the_keeper_starts_with_the_first_connection_and_stops_with_the_broker(rabbitmq: Any) -> None:
    broker = _broker(KeepAliveRabbitmqBroker, rabbitmq.url)
    assert broker.keeper.interval == pytest.approx(HEARTBEAT / 3)
    assert not broker.keeper.is_running()
    thread = Publisher(broker)
    try:
        thread.publish()
        assert broker.keeper.is_running()
    finally:
        thread.stop()
        broker.close()
    assert not broker.keeper.is_running()


def test_no_keeper_without_heartbeats(rabbitmq: Any) -> None:
    broker = _broker(KeepAliveRabbitmqBroker, rabbitmq.url, heartbeat=0)
    assert broker.keeper is None
    broker.close()


def _missed_heartbeats(node: Any) -> int:
    return sum(
        path.read_text(errors="replace").count("missed heartbeats") for path in (node.base / "log").glob("*.log")
    )


def test_an_idle_system_keeps_its_connections_and_stops_without_errors(rabbitmq: Any, tmp_path: Path) -> None:
    system = System(tmp_path, rabbitmq.url, flows=["flows"])
    config = system.config_path.read_text()
    system.config_path.write_text(config.replace("heartbeat = 10", f"heartbeat = {HEARTBEAT}"))
    missed_before = _missed_heartbeats(rabbitmq)
    try:
        system.start_workers(processes=2, threads=2)
        system.start_gateway()
        system.start("scheduler", "-m", "scheduler")
        order = {"customerId": "c-keepalive", "items": [{"productId": "prod-1", "quantity": 1, "price": 1.0}]}
        for _ in range(5):  # some traffic, so worker threads and the gateway hold publishing connections
            assert system.http.post("/orders", json=order).status_code < 300
        wait_for(lambda: "Order processed successfully" in system.log("workers") or None, timeout=30, what="an order")
        time.sleep(HEARTBEAT * 6)  # three heartbeat timeouts, idle
        assert _missed_heartbeats(rabbitmq) == missed_before
        for name in ("workers", "gateway", "scheduler"):
            system.processes.check_alive(name)
    finally:
        system.stop_all()
    for name in ("workers", "gateway", "scheduler"):
        errors = [line for line in system.log(name).splitlines() if "ERROR" in line or "Traceback" in line]
        assert errors == [], f"{name} logged {len(errors)} error lines, the first: {errors[:3]}"
