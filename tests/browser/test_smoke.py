"""The browser recipe works here: Debian's Chromium renders escaped payloads as text and runs a page's own JS."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DOCS_SCREENSHOTS, NewPage, Screenshot, page_errors, screenshot_path

#: Would set window.pwned if the browser ran it as markup rather than showing it as text.
PAYLOAD = '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2">'
SPANS = [
    {"step": "CreateOrder", "status": "ok"},
    {"step": PAYLOAD, "status": "error"},
    {"step": "SendNotification", "status": "ok"},
]

PAGES: dict[str, tuple[str, bytes]] = {
    # Server-side escaping, as the console's pages do it.
    "/payload": (
        "text/html",
        f"<!doctype html><title>payload</title><pre id='payload'>{html.escape(PAYLOAD)}</pre>".encode(),
    ),
    # A list the page's own script builds from JSON, with textContent (never innerHTML).
    "/spans": (
        "text/html",
        b"""<!doctype html><title>spans</title><ul id="spans"></ul>
<script>
fetch("/spans.json").then((r) => r.json()).then((spans) => {
  const list = document.getElementById("spans");
  for (const span of spans) {
    const item = document.createElement("li");
    item.textContent = span.step + " " + span.status;
    item.className = span.status;
    list.append(item);
  }
  document.body.dataset.ready = "1";
});
</script>""",
    ),
    "/spans.json": ("application/json", json.dumps(SPANS).encode()),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path not in PAGES:
            self.send_error(404)
            return
        kind, body = PAGES[self.path]
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """A loopback HTTP server with the pages above; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_escaped_script_shows_as_text_and_does_not_run(new_page: NewPage, site: str) -> None:
    page = new_page(site)
    page.goto("/payload")
    expect(page.locator("#payload")).to_have_text(PAYLOAD)
    assert page.locator("#payload script, #payload img").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page_errors(page) == []


def test_a_list_built_by_the_pages_script_renders(new_page: NewPage, site: str) -> None:
    page = new_page(site)
    page.goto("/spans")
    expect(page.locator("body[data-ready='1']")).to_have_count(1)
    items = page.locator("#spans li")
    expect(items).to_have_count(3)
    expect(items.nth(1)).to_have_text(f"{PAYLOAD} error")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page_errors(page) == []


def test_errors_thrown_by_a_page_are_collected(page: Page) -> None:
    page.set_content("<script>throw new Error('boom from the page')</script>")
    assert any("boom from the page" in error for error in page_errors(page))


def test_each_page_gets_a_fresh_context_of_1280_by_800(new_page: NewPage, site: str) -> None:
    first, second = new_page(site), new_page(site)
    first.goto("/payload")
    first.evaluate("localStorage.setItem('seen', '1')")
    second.goto("/payload")
    assert second.evaluate("localStorage.getItem('seen')") is None
    assert first.viewport_size == {"width": 1280, "height": 800}


def test_a_screenshot_is_a_png_in_the_tests_tmp_dir(
    page: Page, screenshot: Screenshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_SCREENSHOTS", raising=False)
    page.set_content("<h1>Conveyor</h1>")
    path = screenshot(page, "smoke")
    assert path == tmp_path / "smoke.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_screenshots_go_to_the_docs_only_when_asked(tmp_path: Path) -> None:
    assert screenshot_path("traces", tmp_path, {}) == tmp_path / "traces.png"
    assert screenshot_path("traces", tmp_path, {"CONVEYOR_SCREENSHOTS": "1"}) == DOCS_SCREENSHOTS / "traces.png"
    with pytest.raises(ValueError, match="names a file"):
        screenshot_path("../README", tmp_path, {})
