"""Fixtures for tests in a real Chromium: Debian's ``chromium`` package driven by Playwright.

Playwright's own browser download (``playwright install``) is never used: the browser is the
system's ``/usr/bin/chromium``, installed by scripts/test.sh and .ci/run with apt-get. Every
test in this folder is marked ``browser``.

Example, against a gateway started as a real process (tests/system.py)::

    def test_console(system, new_page, screenshot):
        page = new_page(system.gateway_url)
        page.goto("/_console/traces")
        expect(page.get_by_role("heading", name="Traces")).to_be_visible()
        screenshot(page, "traces")
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

#: The browser: Debian's package, not a Playwright download.
CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = (
    f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium fonts-dejavu-core "
    "(scripts/test.sh installs it)"
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
#: Where screenshots go for docs/console.md when CONVEYOR_SCREENSHOTS=1 (CI leaves the docs alone).
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
SCREENSHOTS_ENV = "CONVEYOR_SCREENSHOTS"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

#: Opens a page in a fresh browser context; relative URLs in ``page.goto`` resolve against the base URL.
NewPage = Callable[..., Page]
#: Saves a PNG of the page under the given name and returns its path.
Screenshot = Callable[..., Path]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (closed after it: while it is open, Playwright runs an event loop in
    this thread, and asyncio.run() elsewhere would refuse to start)."""
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """A factory: ``new_page(base_url=None)`` opens a page in a context of its own (1280x800, no shared cookies).

    Every context it opened is closed when the test ends. Errors the page's JavaScript threw are
    collected in :func:`page_errors`.
    """
    contexts: list[BrowserContext] = []

    def open_page(base_url: str | None = None) -> Page:
        context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        _errors[id(page)] = errors
        return page

    yield open_page
    for context in contexts:
        for page in context.pages:
            _errors.pop(id(page), None)
        context.close()


@pytest.fixture
def page(new_page: NewPage) -> Page:
    """A page in a fresh context (1280x800), closed after the test."""
    return new_page()


_errors: dict[int, list[str]] = {}


def page_errors(page: Page) -> list[str]:
    """The uncaught JavaScript errors ``page`` has thrown so far (a page from :func:`new_page`)."""
    return list(_errors.get(id(page), []))


def screenshot_path(name: str, tmp_dir: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the screenshot ``name`` goes: docs/console/NAME.png with CONVEYOR_SCREENSHOTS=1, else ``tmp_dir``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits, '-' and '_' (it names a file)")
    folder = DOCS_SCREENSHOTS if environ.get(SCREENSHOTS_ENV) == "1" else tmp_dir
    return folder / f"{name}.png"


@pytest.fixture
def screenshot(tmp_path: Path) -> Screenshot:
    """``screenshot(page, name, full_page=False)``: a PNG for docs/console.md (see :func:`screenshot_path`)."""

    def take(page: Page, name: str, *, full_page: bool = False) -> Path:
        path = screenshot_path(name, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
