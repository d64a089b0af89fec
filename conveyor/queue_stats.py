"""How many messages wait in each step's queues, from RabbitMQ's management HTTP API.

RabbitMQ refreshes these figures every few seconds (``collect_statistics_interval``, 5 s by
default), so they trail the queues by up to that much.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from dramatiq.common import dq_name, xq_name

from .errors import BrokerUnavailableError
from .rabbitmq import require_rabbitmq, without_credentials

if TYPE_CHECKING:
    from .runtime import Runtime

#: The queue fields read; asking for these alone keeps the answer small.
_COLUMNS = "name,messages,messages_ready,messages_unacknowledged,consumers"


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
    require_rabbitmq(runtime, "Queue stats")
    broker = runtime.config.broker
    queues = ManagementAPI(broker.management_url, broker.url, timeout=timeout).queues()
    stats = []
    for step, actor in sorted(runtime.actors.items()):
        main = queues.get(actor.queue_name)
        delay_queues = _delay_queues(actor.queue_name)
        delayed = [q for name, q in queues.items() if name == dq_name(actor.queue_name) or delay_queues.fullmatch(name)]
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


def _delay_queues(queue: str) -> re.Pattern[str]:
    # Besides Dramatiq's .DQ, a delayed message waits in a TTL queue per delay (conveyor.delays).
    return re.compile(re.escape(queue) + r"\.delay\.\d+ms")


class ManagementAPI:
    """The part of RabbitMQ's management HTTP API that Conveyor reads.

    Parameters:
      base_url: ``[broker] management_url``, e.g. ``http://127.0.0.1:15672``.
      broker_url: ``[broker] url``; its user, password and virtual host are used.
      timeout: seconds to wait for an answer.
    """

    def __init__(self, base_url: str, broker_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.user, password, self.vhost = broker_credentials(broker_url)
        token = base64.b64encode(f"{self.user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self.timeout = timeout

    def queues(self) -> dict[str, dict[str, Any]]:
        """Every queue of the virtual host, by name."""
        found = self._get(f"/api/queues/{quote(self.vhost, safe='')}?columns={_COLUMNS}")
        return {queue["name"]: queue for queue in found}

    def _get(self, path: str) -> Any:
        where = without_credentials(self.base_url)
        request = urllib.request.Request(self.base_url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise BrokerUnavailableError(self._refusal(exc.code, where)) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BrokerUnavailableError(
                f"cannot reach RabbitMQ's management API at {where} ({reason}); enable the plugin "
                "(rabbitmq-plugins enable rabbitmq_management) and check [broker] management_url in config.toml"
            ) from None

    def _refusal(self, status: int, where: str) -> str:
        if status == 401:
            return (
                f"RabbitMQ's management API at {where} refused user {self.user!r} from [broker] url (HTTP 401); "
                "give that user the 'monitoring' tag (rabbitmqctl set_user_tags) or use one that has it"
            )
        if status == 404:
            return f"RabbitMQ's management API at {where} has no virtual host {self.vhost!r} (from [broker] url)"
        return f"RabbitMQ's management API at {where} answered HTTP {status}; see the RabbitMQ log"


def broker_credentials(broker_url: str) -> tuple[str, str, str]:
    """``(user, password, virtual host)`` of an AMQP URL, with RabbitMQ's defaults.

    >>> broker_credentials("amqp://app:s%40cret@mq:5672/orders")
    ('app', 's@cret', 'orders')
    >>> broker_credentials("amqp://mq")
    ('guest', 'guest', '/')
    """
    parts = urlsplit(broker_url)
    user = unquote(parts.username) if parts.username else "guest"
    password = unquote(parts.password) if parts.password is not None else "guest"
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return user, password, unquote(path) if path else "/"
