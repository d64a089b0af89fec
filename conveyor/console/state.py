"""``/state``: the state store's groups with their key counts, a group's keys with their JSON values
(searched by a substring of the key, server side, and paged) and one key's value in full. Read-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..errors import StateKeyError, StateUnavailableError
from ..tracing.filters import MAX_TEXT
from ..tracing.queries import MAX_PAGE
from .rendering import Console

#: Keys per page of a group.
PER_PAGE = 50
#: Characters of a value shown in a group's list (the key's own page shows it whole, up to VALUE_LIMIT).
PREVIEW_LIMIT = 600
VALUE_LIMIT = 256 * 1024


@dataclass(frozen=True)
class KeyPage:
    """One page of a group's keys matching ``search``: ``(key, preview, cut)`` rows, and how many match."""

    rows: list[tuple[str, str, bool]]
    matched: int
    total: int
    page: int

    @property
    def last(self) -> int:
        return max(1, -(-self.matched // PER_PAGE))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def key_page(items: list[tuple[str, Any]], search: str | None, page: int) -> KeyPage:
    """The ``page``-th page of ``items`` whose key holds ``search`` (case-insensitive)."""
    needle = (search or "").lower()
    matching = [(key, value) for key, value in items if needle in key.lower()]
    start = (page - 1) * PER_PAGE
    rows = []
    for key, value in matching[start : start + PER_PAGE]:
        text = pretty(value)
        rows.append((key, text[:PREVIEW_LIMIT], len(text) > PREVIEW_LIMIT))
    return KeyPage(rows, len(matching), len(items), page)


def page_number(value: str | None) -> int:
    """``?page=`` as a whole number from 1 to :data:`MAX_PAGE`; raises ``ValueError`` saying so."""
    if value is None or value == "":
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise ValueError(f"page must be a whole number from 1 to {MAX_PAGE}; got {value[:40]!r}")
    return int(value)


def routes(console: Console) -> list[BaseRoute]:
    store = console.runtime.state

    async def read(request: Request, work: Any) -> Any:
        """``work()`` off the event loop; an error page (a :class:`Response`) if the store refuses."""
        try:
            return await console.blocking(work)
        except StateKeyError as exc:
            return console.error(request, 400, f"{exc}.")
        except StateUnavailableError as exc:
            return console.error(request, 503, f"The state store cannot be reached: {exc}. Try again shortly.")

    async def groups(request: Request) -> Response:
        found = await read(request, store.groups)
        if isinstance(found, Response):
            return found
        return console.render(request, "state.html", title="State", groups=found, backend=store.describe())

    async def group(request: Request) -> Response:
        name = request.path_params["group"]
        search = request.query_params.get("q", "").strip()
        try:
            page = page_number(request.query_params.get("page"))
            if len(search) > MAX_TEXT:
                raise ValueError(f"the search is longer than {MAX_TEXT} characters")
        except ValueError as exc:
            return console.error(request, 400, f"Bad search: {exc}.")
        items = await read(request, lambda: store.items(name))
        if isinstance(items, Response):
            return items
        if not items:
            return console.error(request, 404, f"The state has no group {name!r} (or it holds no keys now).")
        found = key_page(items, search, page)
        params = {"q": search} if search else {}
        return console.render(
            request,
            "state_group.html",
            title=f"State: {name}",
            group=name,
            found=found,
            search=search,
            prev_link="?" + urlencode({**params, "page": page - 1}) if page > 1 else None,
            next_link="?" + urlencode({**params, "page": page + 1}) if page < found.last else None,
        )

    async def key(request: Request) -> Response:
        name, key_name = request.path_params["group"], request.path_params["key"]
        value = await read(request, lambda: store.get(name, key_name))
        if isinstance(value, Response):
            return value
        if value is None:
            return console.error(request, 404, f"The state has no key {key_name!r} in group {name!r}.")
        text = pretty(value)
        return console.render(
            request,
            "state_key.html",
            title=f"State: {name} / {key_name}",
            group=name,
            key=key_name,
            value=text[:VALUE_LIMIT],
            size=len(text),
        )

    return [
        Route("/state", groups, methods=["GET"]),
        Route("/state/{group}", group, methods=["GET"]),
        Route("/state/{group}/{key:path}", key, methods=["GET"]),
    ]
