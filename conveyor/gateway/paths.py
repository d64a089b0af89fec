"""The gateway's own paths, which no step may take and no request span records."""

from __future__ import annotations

#: Paths under this prefix belong to the admin endpoints, never to a step.
ADMIN_PREFIX = "/_admin"

#: Paths under this prefix belong to the web console (conveyor.console), never to a step.
CONSOLE_PREFIX = "/_console"

#: The gateway's own routes.
RESERVED_PATHS = frozenset({"/health", "/openapi.json", "/metrics"})


def under(path: str, prefix: str) -> bool:
    """Is ``path`` the ``prefix`` itself or below it (``/_admin/x``, not ``/_adminx``)?"""
    return path == prefix or path.startswith(prefix + "/")


def is_gateway_path(path: str) -> bool:
    """Does ``path`` belong to the gateway itself (the console, the admin endpoints, its own routes)?"""
    return under(path, ADMIN_PREFIX) or under(path, CONSOLE_PREFIX) or path in RESERVED_PATHS
