"""The part of RabbitMQ's management HTTP API that Conveyor reads (queue figures), on the standard library."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..errors import BrokerUnavailableError
from ..messaging.connections import without_credentials

#: The queue fields read; asking for these alone keeps the answer small.
QUEUE_COLUMNS = "name,messages,messages_ready,messages_unacknowledged,consumers,message_stats.publish"


class ManagementAPI:
    """The part of RabbitMQ's management HTTP API that Conveyor reads.

    Parameters:
      base_url: ``[broker] management_url``, e.g. ``http://127.0.0.1:15672``, or a list of
        them (one per node of a cluster): each call tries them in turn until one answers.
      broker_url: ``[broker] url`` (the first, if a list); its user, password and virtual host are used.
      timeout: seconds to wait for an answer.
    """

    def __init__(self, base_url: str | Sequence[str], broker_url: str | Sequence[str], *, timeout: float = 5.0) -> None:
        self.base_urls = [url.rstrip("/") for url in ([base_url] if isinstance(base_url, str) else base_url)]
        if not self.base_urls:
            raise ValueError("no management API URL: set [broker] management_url in config.toml")
        first_node = broker_url if isinstance(broker_url, str) else broker_url[0]
        self.user, password, self.vhost = broker_credentials(first_node)
        token = base64.b64encode(f"{self.user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self.timeout = timeout

    def queues(self) -> dict[str, dict[str, Any]]:
        """Every queue of the virtual host, by name."""
        try:
            found = self.request("GET", f"/api/queues/{quote(self.vhost, safe='')}?columns={QUEUE_COLUMNS}")
        except LookupError:
            raise BrokerUnavailableError(
                f"RabbitMQ's management API at {self._where()} has no virtual host {self.vhost!r} (from [broker] url)"
            ) from None
        return {queue["name"]: queue for queue in found}

    def queue(self, name: str) -> dict[str, Any] | None:
        """One queue of the virtual host with all its figures (``message_stats`` too), or ``None``."""
        try:
            found: dict[str, Any] = self.request(
                "GET", f"/api/queues/{quote(self.vhost, safe='')}/{quote(name, safe='')}"
            )
        except LookupError:
            return None
        return found

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the API: ``GET``, ``PUT`` or ``DELETE`` of ``path``, with a JSON ``body``.

        Tries each node's API in turn while they cannot be reached. Raises ``LookupError`` for
        a 404 (no such queue, virtual host...), and :class:`~conveyor.errors.BrokerUnavailableError`
        when the API refuses or no node's can be reached.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {**self._headers, **({"Content-Type": "application/json"} if data is not None else {})}
        reasons: list[str] = []
        for base_url in self.base_urls:
            request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read()
                    return json.loads(text) if text else None
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise LookupError(path) from None
                # Every node has the same users: a refusal would be the same on the next one.
                raise BrokerUnavailableError(self._refusal(exc.code, without_credentials(base_url))) from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reasons.append(f"{without_credentials(base_url)}: {getattr(exc, 'reason', exc)}")
        raise BrokerUnavailableError(
            f"cannot reach RabbitMQ's management API at {'; '.join(reasons)}; enable the plugin "
            "(rabbitmq-plugins enable rabbitmq_management) and check [broker] management_url in config.toml"
        )

    def _where(self) -> str:
        return ", ".join(without_credentials(url) for url in self.base_urls)

    def _refusal(self, status: int, where: str) -> str:
        if status == 401:
            return (
                f"RabbitMQ's management API at {where} refused user {self.user!r} from [broker] url (HTTP 401); "
                "give that user the 'monitoring' tag (rabbitmqctl set_user_tags) or use one that has it"
            )
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
