"""The HTTP gateway: a Starlette app built from the HTTP steps, which validates requests, runs the
handlers and enqueues their work (:func:`~.app.build_app`). ``python -m gateway`` serves it."""

from __future__ import annotations

from .app import build_app

__all__ = ["build_app"]
