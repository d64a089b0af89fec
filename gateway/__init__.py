"""Conveyor's HTTP gateway: serves the HTTP steps and enqueues their work (``python -m gateway``)."""

from __future__ import annotations

from .app import build_app

__all__ = ["build_app"]
