"""Heartbeats for the publishing connections Dramatiq keeps per thread, so an idle one is never dropped.

pika's ``BlockingConnection`` answers RabbitMQ's heartbeats only while its thread is inside a
pika call. Dramatiq keeps one publishing connection per thread that publishes (a worker thread,
a pool thread of the gateway, an executor thread of the scheduler), and a thread that publishes
rarely leaves its connection silent until RabbitMQ closes it for missed heartbeats: the next
publish then pays a reconnect, and the process's stop logs a pile of pika errors.

:class:`KeepAliveRabbitmqBroker` fixes that in each process with one daemon thread, a
:class:`ConnectionKeeper`, that every ``heartbeat / 3`` seconds calls ``process_data_events(0)``
on each publishing connection nobody is using at that moment. pika's connection is not
thread-safe, but serialised use from two threads is fine: each connection belongs to a lock of
its thread (:class:`GuardedConnection`), which the broker's own operations hold from start to
end, and the keeper only takes it when it is free.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

logger = logging.getLogger("conveyor.keepalive")

P = ParamSpec("P")
R = TypeVar("R")

#: RabbitMQ's heartbeat when the URL leaves it to the server (pika's ``heartbeat=None``).
SERVER_DEFAULT_HEARTBEAT = 60


class GuardedConnection(pika.BlockingConnection):  # type: ignore[misc]  # pika has no type hints
    """A ``BlockingConnection`` whose I/O holds ``lock``, and that knows which thread and process own it.

    Parameters:
      parameters: pika's connection parameters (one node's, or a list to try in order).
      lock: the owning thread's lock; the keeper takes it to service this connection.
    """

    def __init__(self, parameters: Any, *, lock: threading.RLock) -> None:
        self.lock = lock
        self.owner = threading.current_thread()
        self.pid = os.getpid()
        super().__init__(parameters=parameters)

    def _flush_output(self, *waiters: Callable[[], bool]) -> None:
        # Every blocking pika call waits here: holding the lock keeps the keeper out meanwhile.
        with self.lock:
            super()._flush_output(*waiters)

    def process_data_events(self, time_limit: float | None = 0) -> None:
        with self.lock:
            super().process_data_events(time_limit)


class ConnectionKeeper:
    """A daemon thread that, every ``interval`` seconds, services each idle connection of ``broker``.

    A connection is idle when its lock is free: its thread is not inside a broker call. A
    connection whose thread has ended is closed and forgotten (nothing can use it any more).
    Started by :meth:`ensure_running` in the process that uses the broker, so a forked worker
    gets a keeper of its own; connections made by another process (before a fork) are left alone.

    Parameters:
      broker: the broker whose ``connections`` (Dramatiq's set of publishing connections) to keep.
      interval: seconds between rounds; a third of the heartbeat answers well within its timeout.
    """

    def __init__(self, broker: RabbitmqBroker, interval: float) -> None:
        self.broker = broker
        self.interval = interval
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._starting = threading.Lock()

    def is_running(self) -> bool:
        """Does the thread run in this process?"""
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def ensure_running(self) -> None:
        """Start the thread unless it runs in this process already."""
        if self.is_running():
            return
        if self._pid != os.getpid():
            # A forked child inherits the parent's locks in whatever state they were: make new ones.
            self._starting = threading.Lock()
            self._stop = threading.Event()
        with self._starting:
            if self.is_running():
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="conveyor-keepalive", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        """Stop the thread and wait for its round to end."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the keeper must outlive any surprise; the next round tries again
                logger.exception("Keeping the RabbitMQ connections alive failed; trying again in %.1fs", self.interval)

    def tick(self) -> int:
        """One round: service every idle connection of this process; returns how many it serviced."""
        serviced = 0
        for connection in list(self.broker.connections):
            if not isinstance(connection, GuardedConnection) or connection.pid != os.getpid():
                continue
            if not connection.lock.acquire(blocking=False):
                continue  # its thread is in a pika call, which services the heartbeats itself
            try:
                if not connection.owner.is_alive():
                    self._forget(connection)
                elif connection.is_open:
                    connection.process_data_events(0)
                    serviced += 1
            except pika.exceptions.AMQPError as exc:
                # Closed under us (a restart of RabbitMQ, say): the thread's next publish reconnects.
                logger.info("A publishing connection to RabbitMQ closed while idle: %r", exc)
            finally:
                connection.lock.release()
        return serviced

    def _forget(self, connection: GuardedConnection) -> None:
        for channel in [c for c in list(self.broker.channels) if c.connection is connection]:
            self.broker.channels.discard(channel)
        self.broker.connections.discard(connection)
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass  # already gone: nothing left to release


def holding_connection(method: Callable[P, R]) -> Callable[P, R]:
    """Run a broker method while holding the calling thread's connection lock (see the module doc).

    For a subclass of :class:`KeepAliveRabbitmqBroker` that talks to ``self.channel`` itself,
    such as an ``enqueue`` override::

        @holding_connection
        def enqueue(self, message, *, delay=None): ...
    """

    @wraps(method)
    def holding(*args: P.args, **kwargs: P.kwargs) -> R:
        broker = args[0]
        assert isinstance(broker, KeepAliveRabbitmqBroker)
        with broker.holding():
            return method(*args, **kwargs)

    return holding


class KeepAliveRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker whose per-thread publishing connections keep up their heartbeats.

    Subclassed where Dramatiq has no hook: ``connection`` makes a :class:`GuardedConnection`
    and starts the process's :class:`ConnectionKeeper`; the operations that use the thread's
    channel hold its lock; ``consume`` lets go of the publishing connection that declaring the
    consumer's queue opened in a consumer thread, which would otherwise sit idle for good.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        heartbeat = _heartbeat(self.parameters)
        #: None when heartbeats are off (``heartbeat=0``): then nothing needs keeping.
        self.keeper = ConnectionKeeper(self, heartbeat / 3) if heartbeat else None

    def _thread_lock(self) -> threading.RLock:
        lock: threading.RLock | None = getattr(self.state, "lock", None)
        if lock is None:
            lock = self.state.lock = threading.RLock()
        return lock

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold this thread's connection lock while inside: the keeper leaves its connection alone."""
        with self._thread_lock():
            yield

    @property
    def connection(self) -> Any:
        connection = getattr(self.state, "connection", None)
        if connection is None:
            connection = self.state.connection = GuardedConnection(self.parameters, lock=self._thread_lock())
            self.connections.add(connection)
            if self.keeper is not None:
                self.keeper.ensure_running()
        return connection

    @connection.deleter
    def connection(self) -> None:
        with self.holding():
            vars(RabbitmqBroker)["connection"].fdel(self)  # Dramatiq's: drop the channel, close the connection

    @holding_connection
    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        return super().enqueue(message, delay=delay)

    @holding_connection
    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        super().declare_queue(queue_name, ensure=ensure)

    @holding_connection
    def get_queue_message_counts(self, queue_name: str) -> tuple[int, int, int]:
        return super().get_queue_message_counts(queue_name)

    @holding_connection
    def flush(self, queue_name: str) -> None:
        super().flush(queue_name)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        had_connection = getattr(self.state, "connection", None) is not None
        consumer = super().consume(queue_name, prefetch=prefetch, timeout=timeout)
        if not had_connection:
            del self.connection  # opened only to declare the queue; the consumer has its own
        return consumer

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
        super().close()


def _heartbeat(parameters: Any) -> int:
    """The heartbeat (seconds) the broker's connections ask for; with several nodes, the first one's."""
    first = parameters[0] if isinstance(parameters, list) else parameters
    heartbeat = getattr(first, "heartbeat", None)
    if heartbeat is None or callable(heartbeat):
        return SERVER_DEFAULT_HEARTBEAT
    return int(heartbeat)
