"""A plain Dramatiq actor on a plain RabbitmqBroker: the yardstick for bench/worker_throughput.py.

``dramatiq bench.plain_actors -p 2 -t 8`` runs it. The broker has the settings Conveyor's has
(publisher confirms, the same ``max_priority``, the same URL with its heartbeat) and Dramatiq's
default middleware, none of Conveyor's. The URL and priority come from the environment.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from .completions import mark_done
from .environment import BROKER_URL_ENV, MAX_PRIORITY_ENV

QUEUE = "bench-plain"

broker = RabbitmqBroker(
    url=os.environ.get(BROKER_URL_ENV, "amqp://guest:guest@127.0.0.1:5672/%2F"),
    confirm_delivery=True,
    max_priority=int(os.environ.get(MAX_PRIORITY_ENV, "10")),
)
dramatiq.set_broker(broker)


@dramatiq.actor(broker=broker, queue_name=QUEUE)
def plain_noop(data: Any = None) -> None:
    """Does nothing but count itself done."""
    mark_done()
