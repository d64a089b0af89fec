"""Helpers for the gateway's system tests: RabbitMQ's count of messages published to a queue."""

from __future__ import annotations

import time

from conveyor.ops.management import ManagementAPI

#: RabbitMQ refreshes the management API's figures this often (``collect_statistics_interval``).
STATS_INTERVAL = 5.0


def publish_count(management_url: str, queue: str, *, vhost: str = "/") -> int:
    """How many messages were ever published to ``queue``, as RabbitMQ's management API last counted."""
    api = ManagementAPI(management_url, f"amqp://guest:guest@127.0.0.1/{vhost if vhost != '/' else ''}")
    found = api.queue(queue)  # None: not declared yet, so nothing was ever published to it
    return int(((found or {}).get("message_stats") or {}).get("publish", 0))


def settled_publish_count(
    management_url: str, queue: str, *, at_least: int = 0, timeout: float = 60.0, interval: float = 0.5
) -> int:
    """The publish count of ``queue`` once it is at least ``at_least`` and has not moved for a full
    statistics interval, so that no publish made before the call is still to be counted.
    """
    deadline = time.monotonic() + timeout
    value = publish_count(management_url, queue)
    since = time.monotonic()
    while True:
        time.sleep(interval)
        current = publish_count(management_url, queue)
        if current != value:
            value, since = current, time.monotonic()
        elif value >= at_least and time.monotonic() - since > STATS_INTERVAL + 1:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"publish count of {queue} did not settle at {at_least} or more; last {value}")
