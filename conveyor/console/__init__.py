"""The web console the gateway serves under ``/_console``: flows, traces, logs and the operator's pages."""

from __future__ import annotations

from ..gateway.paths import CONSOLE_PREFIX
from .access import ConsoleAccess
from .app import console_app

__all__ = ["CONSOLE_PREFIX", "ConsoleAccess", "console_app"]
