"""The gateway as an ASGI app to import by name: ``uvicorn gateway.asgi:app`` (used for ``--workers``)."""

from __future__ import annotations

import actors
from gateway import build_app

app = build_app(actors.runtime)
