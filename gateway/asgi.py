"""The gateway as an ASGI app to import by name: ``uvicorn gateway.asgi:app``.

Importing it boots the runtime: each of several gateway processes (``[gateway] workers``)
imports it after it starts, and so builds its own app, RabbitMQ publisher and state pool.
"""

from __future__ import annotations

from conveyor.runtime import boot_or_exit
from gateway import build_app

app = build_app(boot_or_exit())
