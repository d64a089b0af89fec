"""Who may use the console: open on loopback, the API key elsewhere (login cookie or header), and
no state-changing request without the CSRF token and a same-site Origin."""

from __future__ import annotations

import re

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from conveyor import Registry, http, step
from conveyor.console import ConsoleAccess, console_app
from conveyor.console.access import COOKIE, csrf_token, session_cookie
from tests.helpers import memory_runtime

KEY = "s3cret-console-key-0123"
ORIGIN = {"Origin": "http://testserver"}
PUBLIC = f'[gateway]\nhost = "0.0.0.0"\n[admin]\napi_key = "{KEY}"\n'


def make_runtime(tmp_path, toml=""):
    registry = Registry()
    step(name="Hello", flows=["greetings"], triggers=[http("GET", "/hello")], registry=registry)(lambda r, c: None)
    return memory_runtime(tmp_path, registry, toml)


def console(runtime):
    return TestClient(Starlette(routes=[Mount("/_console", app=console_app(runtime, None))]))


def probe(runtime):
    """ConsoleAccess around a page that records every POST that reached it."""
    done: list[str] = []

    async def form(request: Request) -> Response:
        return PlainTextResponse(csrf_token(request.scope))

    async def act(request: Request) -> Response:
        done.append((await request.body()).decode())
        return PlainTextResponse("done")

    inner = Starlette(
        routes=[Route("/form", form), Route("/act", act, methods=["POST"]), Route("/api/act", act, methods=["POST"])]
    )
    client = TestClient(Starlette(routes=[Mount("/_console", app=ConsoleAccess(inner, runtime))]))
    return client, done


def test_loopback_console_is_open_without_a_key(tmp_path):
    response = console(make_runtime(tmp_path)).get("/_console/flows/greetings")
    assert response.status_code == 200
    assert "Hello" in response.text


def test_public_gateway_without_a_key_closes_the_console_saying_what_to_set(tmp_path):
    client = console(make_runtime(tmp_path, '[gateway]\nhost = "0.0.0.0"\n'))
    page = client.get("/_console/flows")
    assert page.status_code == 403
    assert "[admin] api_key" in page.text
    api = client.get("/_console/api/traces")
    assert api.status_code == 403
    assert "[admin] api_key" in api.json()["error"]


def test_public_gateway_sends_a_browser_to_the_login_page_and_refuses_the_api(tmp_path):
    client = console(make_runtime(tmp_path, PUBLIC))
    page = client.get("/_console/flows/greetings?x=1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/_console/login?next=/_console/flows/greetings%3Fx%3D1"
    assert client.get("/_console/login").status_code == 200
    api = client.get("/_console/api/logs")
    assert api.status_code == 401
    assert "X-API-Key" in api.json()["error"]


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_the_key_in_a_header_opens_the_console(tmp_path, headers):
    assert console(make_runtime(tmp_path, PUBLIC)).get("/_console/flows", headers=headers).status_code == 200


def test_a_wrong_key_is_refused(tmp_path):
    client = console(make_runtime(tmp_path, PUBLIC))
    assert client.get("/_console/flows", headers={"X-API-Key": "not-the-key-at-all"}).status_code == 401
    login = client.post("/_console/login", data={"api_key": "not-the-key-at-all"}, headers=ORIGIN)
    assert login.status_code == 401
    assert COOKIE not in login.cookies
    assert client.get("/_console/flows", follow_redirects=False).status_code == 303


def test_login_sets_an_httponly_strict_cookie_without_the_key_that_opens_the_console(tmp_path):
    client = console(make_runtime(tmp_path, PUBLIC))
    login = client.post(
        "/_console/login", data={"api_key": KEY, "next": "/_console/flows/greetings"}, headers=ORIGIN,
        follow_redirects=False,
    )  # fmt: skip
    assert login.status_code == 303
    assert login.headers["location"] == "/_console/flows/greetings"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert KEY not in cookie
    page = client.get("/_console/flows/greetings")
    assert page.status_code == 200
    assert "Log out" in page.text


def test_login_never_redirects_to_another_site(tmp_path):
    client = console(make_runtime(tmp_path, PUBLIC))
    login = client.post(
        "/_console/login", data={"api_key": KEY, "next": "https://evil.example/"}, headers=ORIGIN,
        follow_redirects=False,
    )  # fmt: skip
    assert login.headers["location"] == "/_console/flows"


def test_a_forged_post_on_loopback_is_refused_and_changes_nothing(tmp_path):
    client, done = probe(make_runtime(tmp_path))
    token = client.get("/_console/form").text
    assert token
    assert client.post("/_console/act", data={"csrf_token": token}).status_code == 403  # no Origin at all
    evil = {"Origin": "http://evil.example"}
    assert client.post("/_console/act", data={"csrf_token": token}, headers=evil).status_code == 403
    assert client.post("/_console/act", data={"csrf_token": "forged"}, headers=ORIGIN).status_code == 403
    api = client.post("/_console/api/act", data={}, headers=ORIGIN)
    assert api.status_code == 403
    assert "token" in api.json()["error"]
    assert done == []
    accepted = client.post("/_console/act", data={"csrf_token": token, "n": "1"}, headers=ORIGIN)
    assert accepted.status_code == 200
    assert done == [f"csrf_token={token}&n=1"]  # the page still reads the whole body
    by_header = client.post("/_console/act", headers={"X-CSRF-Token": token, "Referer": "http://testserver/x"})
    assert by_header.status_code == 200


def test_a_logged_in_session_still_needs_the_token_to_post(tmp_path):
    client, done = probe(make_runtime(tmp_path, PUBLIC))
    client.cookies.set(COOKIE, session_cookie(KEY))
    token = client.get("/_console/form").text
    assert client.post("/_console/act", data={}, headers=ORIGIN).status_code == 403
    assert done == []
    assert client.post("/_console/act", data={"csrf_token": token}, headers=ORIGIN).status_code == 200
    # An API client with the key in a header cannot be forged by a browser: no token needed.
    assert client.post("/_console/api/act", headers={"X-API-Key": KEY}).status_code == 200


def test_logout_needs_the_token_and_ends_the_session(tmp_path):
    client = console(make_runtime(tmp_path, PUBLIC))
    client.post("/_console/login", data={"api_key": KEY}, headers=ORIGIN)
    page = client.get("/_console/flows")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert token is not None
    assert client.post("/_console/logout", data={}, headers=ORIGIN).status_code == 403
    out = client.post("/_console/logout", data={"csrf_token": token[1]}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.clear()
    assert client.get("/_console/flows", follow_redirects=False).status_code == 303
