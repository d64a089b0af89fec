"""The gateway as an ASGI app to import by name: ``uvicorn gateway.asgi:app`` (used for ``--workers``).

Importing it boots the runtime (each uvicorn worker process builds its own app and publisher).
"""

from __future__ import annotations

from conveyor.runtime import boot_or_exit
from gateway import build_app

app = build_app(boot_or_exit())
