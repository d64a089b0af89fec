"""Conveyor's HTTP gateway, the front door: ``python -m gateway`` serves the app that
:func:`conveyor.gateway.build_app` builds from the HTTP steps."""

from __future__ import annotations

from conveyor.gateway import build_app

__all__ = ["build_app"]
