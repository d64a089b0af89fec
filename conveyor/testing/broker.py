"""The in-process broker of :class:`~conveyor.testing.FlowEnvironment`: Dramatiq's StubBroker, closer to RabbitMQ.

Three differences from the StubBroker, each so that a flow behaves in a test as it does on RabbitMQ:

- a queue hands out its highest-priority message first (RabbitMQ's ``x-max-priority`` queues);
- a step's ``concurrency`` caps its prefetch, as :class:`~conveyor.messaging.broker.ConveyorRabbitmqBroker` does;
- a delayed message (a ``delay=``, a retry's backoff) waits on a clock the test controls: it
  is released when the test drains the queues, in the order of its due time, without the test
  sleeping (unless the environment asks for real delays).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from queue import Queue
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, q_name
from dramatiq.errors import ConnectionClosed, QueueNotFound
from dramatiq.middleware import Middleware

from .records import Refusals


@dataclass(frozen=True)
class SentMessage:
    """A message the broker took: to which step, from which topic, with what data and delay."""

    step: str
    topic: str | None
    data: Any
    message_id: str
    trace_id: str | None
    delay_ms: int | None
    options: dict[str, Any] = field(default_factory=dict)


class PriorityQueue(Queue[Any]):
    """A FIFO queue per priority, highest first; ``put((priority, data))``, ``get() -> data``."""

    def _init(self, maxsize: int) -> None:
        self._heap: list[tuple[int, int, bytes]] = []
        self._order = itertools.count()

    def _qsize(self) -> int:
        return len(self._heap)

    def _put(self, item: Any) -> None:
        priority, data = item if isinstance(item, tuple) else (0, item)
        heapq.heappush(self._heap, (-priority, next(self._order), data))

    def _get(self) -> bytes:
        return heapq.heappop(self._heap)[2]


class InProcessBroker(StubBroker):
    """A StubBroker with priorities, per-step concurrency and a controllable clock for delays.

    Parameters:
      middleware: the broker's middleware (Conveyor's, after Dramatiq's basics).
      concurrency: queue name -> how many of its messages a worker takes at once.
      real_delays: wait for delayed messages in real time instead of skipping ahead.
    """

    def __init__(
        self,
        middleware: list[Middleware] | None = None,
        *,
        concurrency: dict[str, int] | None = None,
        real_delays: bool = False,
    ) -> None:
        super().__init__(middleware, fail_fast_default=False)
        self.concurrency = dict(concurrency or {})
        self.real_delays = real_delays
        #: Every message taken, in order.
        self.sent: list[SentMessage] = []
        self._lock = threading.Lock()
        self._delayed: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()
        self._skipped = 0.0
        self._taken = 0
        #: The queues that refuse publishes for now (FlowEnvironment.refusing).
        self.refusals = Refusals()
        #: Every message refused so far, in order.
        self.refused: list[SentMessage] = []

    def declare_queue(self, queue_name: str) -> None:
        if queue_name in self.queues:
            return
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = PriorityQueue()
        self.emit_after("declare_queue", queue_name)
        delayed = dq_name(queue_name)
        self.queues[delayed] = Queue()  # never filled: delayed messages wait on the clock instead
        self.delay_queues.add(delayed)
        self.emit_after("declare_delay_queue", delayed)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        queue_name = q_name(message.queue_name)
        if queue_name not in self.queues:
            raise QueueNotFound(queue_name)
        self._refuse(queue_name, message, delay)
        self.emit_before("enqueue", message, delay)
        data = message.encode()
        with self._lock:
            self._taken += 1
            self.sent.append(_sent(message, delay))
            if delay:
                due = self.now() + delay / 1000
                heapq.heappush(self._delayed, (due, next(self._order), queue_name, data))
            else:
                self.queues[queue_name].put((message.options.get("broker_priority") or 0, data))
        self.emit_after("enqueue", message, delay)
        return message

    def _refuse(self, queue_name: str, message: dramatiq.Message[Any], delay: int | None) -> None:
        if not self.refusals.take(queue_name):
            return
        with self._lock:
            self.refused.append(_sent(message, delay))
        # What the RabbitMQ broker raises when a publish is not confirmed; the publisher makes it a PublishError.
        raise ConnectionClosed(f"basic.nack: the test refuses messages to queue {queue_name!r}")

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 100) -> dramatiq.Consumer:
        if queue_name in self.concurrency:
            prefetch = min(prefetch, self.concurrency[queue_name])
        return super().consume(queue_name, prefetch=prefetch, timeout=timeout)

    # -- the clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """The broker's clock, in seconds: real time plus whatever :meth:`release_next` skipped."""
        return time.monotonic() + self._skipped

    @property
    def skipped(self) -> float:
        """Seconds of waiting skipped so far."""
        return self._skipped

    @property
    def taken(self) -> int:
        """How many messages the broker has taken so far (delayed ones included)."""
        return self._taken

    def next_due(self) -> float | None:
        """Seconds until the next delayed message is due (0 if one is), or ``None`` when none waits."""
        with self._lock:
            return max(0.0, self._delayed[0][0] - self.now()) if self._delayed else None

    def release_due(self) -> int:
        """Move every delayed message whose time has come to its queue; returns how many."""
        released = 0
        with self._lock:
            while self._delayed and self._delayed[0][0] <= self.now():
                _, _, queue_name, data = heapq.heappop(self._delayed)
                message = dramatiq.Message.decode(data)
                self.queues[queue_name].put((message.options.get("broker_priority") or 0, data))
                released += 1
        return released

    def skip_to_next(self) -> int:
        """Move the clock forward to the next delayed message and release it (and any due with it)."""
        with self._lock:
            if not self._delayed:
                return 0
            self._skipped += max(0.0, self._delayed[0][0] - self.now())
        return self.release_due()


def _sent(message: dramatiq.Message[Any], delay: int | None) -> SentMessage:
    options = dict(message.options)
    return SentMessage(
        step=message.actor_name,
        topic=options.get("topic"),
        data=message.args[0] if message.args else None,
        message_id=message.message_id,
        trace_id=options.get("trace_id"),
        delay_ms=delay,
        options=options,
    )
