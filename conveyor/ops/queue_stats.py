"""How many messages wait in each step's queues, from RabbitMQ's management HTTP API.

RabbitMQ refreshes these figures every few seconds (``collect_statistics_interval``, 5 s by
default), so they trail the queues by up to that much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dramatiq.common import dq_name, xq_name

from ..messaging.connections import require_rabbitmq
from ..messaging.delays import is_delay_queue
from ..runtime import Runtime
from .management import ManagementAPI


@dataclass(frozen=True)
class QueueStats:
    """One step's queues: ``ready`` and ``unacknowledged`` (taken by a worker, running or
    prefetched) in its queue, ``delayed`` (waiting for a retry or a ``delay``) in ``.DQ`` and
    its ``.delay.<N>ms`` queues, ``dead_lettered`` in ``.XQ``, and the ``consumers`` of its
    queue. ``declared`` is false while RabbitMQ has no such queue yet (all counts are then 0).
    """

    step: str
    queue: str
    ready: int
    unacknowledged: int
    delayed: int
    dead_lettered: int
    consumers: int
    declared: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "queue": self.queue,
            "ready": self.ready,
            "unacknowledged": self.unacknowledged,
            "delayed": self.delayed,
            "deadLettered": self.dead_lettered,
            "consumers": self.consumers,
            "declared": self.declared,
        }


def queue_stats(runtime: Runtime, *, timeout: float = 5.0) -> list[QueueStats]:
    """Counts for every step that has a queue, by step name; blocks for one HTTP request.

    Raises :class:`~conveyor.errors.UnsupportedBrokerError` on the in-memory broker and
    :class:`~conveyor.errors.BrokerUnavailableError` when the management API cannot be used.
    """
    require_rabbitmq(runtime.broker, "Queue stats")
    broker = runtime.config.broker
    queues = ManagementAPI(broker.management_urls, broker.urls, timeout=timeout).queues()
    stats = []
    for step, actor in sorted(runtime.actors.items()):
        main = queues.get(actor.queue_name)
        queue = actor.queue_name
        delayed = [q for name, q in queues.items() if name == dq_name(queue) or is_delay_queue(name, queue)]
        dead = queues.get(xq_name(actor.queue_name)) or {}
        stats.append(
            QueueStats(
                step=step,
                queue=actor.queue_name,
                ready=(main or {}).get("messages_ready") or 0,
                unacknowledged=(main or {}).get("messages_unacknowledged") or 0,
                delayed=sum(q.get("messages") or 0 for q in delayed),
                dead_lettered=dead.get("messages") or 0,
                consumers=(main or {}).get("consumers") or 0,
                declared=main is not None,
            )
        )
    return stats
