"""Helpers for the gateway's system tests: RabbitMQ's publish counts, and a gateway serving /openapi.json.

``python -m tests.gateway_helpers`` runs the gateway like ``python -m gateway`` does, with
``GET /openapi.json`` mounted (unless :func:`gateway.build_app` mounts it already).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

#: RabbitMQ refreshes the management API's figures this often (``collect_statistics_interval``).
STATS_INTERVAL = 5.0


def publish_count(management_url: str, queue: str, *, vhost: str = "/") -> int:
    """How many messages were ever published to ``queue``, as RabbitMQ's management API last counted."""
    url = f"{management_url}/api/queues/{urllib.parse.quote(vhost, safe='')}/{urllib.parse.quote(queue, safe='')}"
    request = urllib.request.Request(
        url, headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            stats = json.load(response).get("message_stats") or {}
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # not declared yet: nothing was ever published to it
            return 0
        raise
    return int(stats.get("publish", 0))


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


def serve_gateway_with_openapi() -> None:
    """Run the gateway with ``GET /openapi.json``, with the host and port of ``[gateway]`` in the config."""
    import uvicorn

    import actors
    from conveyor.gateway.openapi import OPENAPI_PATH, openapi_route
    from gateway import build_app

    runtime = actors.runtime
    app = build_app(runtime)
    if not any(getattr(route, "path", None) == OPENAPI_PATH for route in app.router.routes):
        app.router.routes.append(openapi_route(runtime))
    uvicorn.run(
        app,
        host=runtime.config.gateway.host,
        port=runtime.config.gateway.port,
        log_level=runtime.config.logging.level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    serve_gateway_with_openapi()
