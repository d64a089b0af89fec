"""What every console page shares: the :class:`Console` a page module builds its routes from,
the Jinja2 templates (autoescaped, all of them), the nav bar and the 4xx pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..runtime import Runtime
from ..tracing.queries import TraceStore
from .access import csrf_token

HERE = Path(__file__).parent

#: The nav bar: (label, path under the console), in order. A page module serves its own path.
NAV: tuple[tuple[str, str], ...] = (
    ("Flows", "/flows"),
    ("Traces", "/traces"),
    ("Logs", "/logs"),
    ("Queues", "/queues"),
    ("Dead letters", "/dead-letters"),
    ("State", "/state"),
    ("Endpoints", "/endpoints"),
    ("Cron", "/cron"),
)


def _when(seconds: float | None) -> str:
    """Seconds since the epoch as UTC, to the millisecond."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def environment() -> Environment:
    """The console's templates; autoescape is on for every template, whatever its name."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["when"] = _when
    env.filters["ms"] = _ms
    env.filters["pretty"] = _pretty
    return env


@dataclass
class Console:
    """What a page module gets to build its routes: the runtime, the trace store (``None`` when
    tracing is off) and the templates."""

    runtime: Runtime
    traces: TraceStore | None
    templates: Environment = field(default_factory=environment)

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        """``template`` inside the shared layout; ``values`` become template variables."""
        base = console_root(request)
        token = csrf_token(request.scope)
        page = self.templates.get_template(template).render(
            request=request,
            base=base,
            nav=[(label, base + path) for label, path in NAV],
            current=request.url.path,
            csrf_token=token,  # for JS: the X-CSRF-Token header (README-dev.md)
            csrf_field=Markup('<input type="hidden" name="csrf_token" value="{}">').format(token),
            **values,
        )
        return HTMLResponse(page, status_code=status)

    def error(self, request: Request, status: int, message: str, *, title: str | None = None) -> HTMLResponse:
        """A 4xx/5xx page that says what went wrong and what to do."""
        return self.render(
            request, "error.html", status=status, title=title or _TITLES.get(status, "Error"), message=message
        )

    async def blocking(self, work: Callable[[], Any]) -> Any:
        """Run store or RabbitMQ calls (which block) off the event loop."""
        return await run_in_threadpool(work)


_TITLES = {400: "Bad request", 401: "Log in", 403: "Forbidden", 404: "Not found", 503: "Unavailable"}


def console_root(request: Request) -> str:
    """Where the console is mounted (``/_console``), for links."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def tracing_off_message() -> str:
    return "Tracing is off, so there are no traces or logs to show: set [tracing] enabled = true in config.toml."
