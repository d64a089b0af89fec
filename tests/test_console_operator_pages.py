"""The console's operator pages in process (memory broker, real trace and state stores): state,
endpoints and the API reference, cron with "fire now", the queues and dead-letters notes without
RabbitMQ, escaping, and a 4xx for bad input and for every POST without its CSRF token."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conveyor import Registry, cron, http, queue, step
from conveyor.console import console_app
from conveyor.console.cron import next_fire
from conveyor.console.state import PER_PAGE
from conveyor.gateway import build_app
from tests.helpers import memory_runtime

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
ORIGIN = {"Origin": "http://testserver"}


class NewPet(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"name": "Rex", "species": "dog"}})

    name: str = Field(description="What the pet answers to")
    species: str


class Pet(BaseModel):
    id: str
    name: str


@pytest.fixture
def runtime(tmp_path):
    registry = Registry()
    none = lambda data, ctx: None  # noqa: E731
    created = lambda request, ctx: {"status": 201, "body": {"id": "1", "name": "Rex"}}  # noqa: E731
    step(name="CreatePet", flows=["pets"], triggers=[http("POST", "/pets", body=NewPet, responses={201: Pet})],
         enqueues=["pet.created"], registry=registry)(created)  # fmt: skip
    step(name="GetPet", flows=["pets"], triggers=[http("GET", "/pets/{id}")], registry=registry)(none)
    step(name="Welcome", flows=["pets"], triggers=[queue("pet.created")], registry=registry)(none)
    step(name="Reaper", flows=["pets"], triggers=[cron("30 2 * * *")], registry=registry)(none)
    built = memory_runtime(tmp_path, registry, '[scheduler]\ntimezone = "Europe/Paris"\n')
    yield built
    built.close()


@pytest.fixture
def client(runtime):
    app = Starlette(routes=[Mount("/_console", app=console_app(runtime, runtime.traces()))])
    return TestClient(app, raise_server_exceptions=False)


def token(client, page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert found, page
    return found[1]


# -- state ---------------------------------------------------------------------------------------


def test_state_lists_groups_keys_and_values_as_text(client, runtime):
    runtime.state.set("pets", "rex", {"name": SCRIPT, "age": 3})
    runtime.state.set("pets", "a/b?c#d", {"ok": True})
    runtime.state.set("orders", "o-1", [1, 2])

    groups = client.get("/_console/state")
    assert groups.status_code == 200
    assert re.search(r'href="/_console/state/orders">orders</a></td><td class="num">1<', groups.text)
    assert re.search(r'href="/_console/state/pets">pets</a></td><td class="num">2<', groups.text)

    group = client.get("/_console/state/pets")
    assert ESCAPED in group.text and SCRIPT not in group.text
    assert "&#34;age&#34;: 3" in group.text

    key = client.get("/_console/state/pets/rex")
    assert key.status_code == 200
    assert f"&#34;name&#34;: &#34;{ESCAPED}&#34;" in key.text
    odd = client.get("/_console/state/pets/a/b%3Fc%23d")  # a key holding / ? # is reachable from its link
    assert odd.status_code == 200 and "&#34;ok&#34;: true" in odd.text
    assert 'href="/_console/state/pets/a/b%3Fc%23d"' in group.text


def test_state_search_is_a_key_substring_and_pages(client, runtime):
    for n in range(PER_PAGE + 5):
        runtime.state.set("many", f"key-{n:03d}", n)
    runtime.state.set("many", "other", "x")

    first = client.get("/_console/state/many?q=KEY-")
    assert f"{PER_PAGE + 5} of {PER_PAGE + 6} keys" in first.text
    assert "key-000" in first.text and "other" not in first.text
    assert 'rel="next"' in first.text
    second = client.get("/_console/state/many?q=key-&page=2")
    assert "key-054" in second.text and "key-000<" not in second.text
    beyond = client.get("/_console/state/many?page=40")
    assert beyond.status_code == 200 and "No keys on this page" in beyond.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/_console/state/nothing", 404, "no group"),
        ("/_console/state/pets/missing", 404, "no key"),
        ("/_console/state/pets?page=0", 400, "page must be a whole number"),
        ("/_console/state/pets?page=abc", 400, "page must be a whole number"),
        ("/_console/state/pets?page=99999999999999999999", 400, "page must be a whole number"),
        ("/_console/state/pets?q=" + "x" * 600, 400, "longer than"),
        ("/_console/state/" + "g" * 3000, 400, "group"),
    ],
)
def test_state_refuses_bad_input_with_a_page_saying_why(client, runtime, path, status, says):
    runtime.state.set("pets", "rex", 1)
    response = client.get(path)
    assert response.status_code == status
    assert says in response.text.lower()
    assert "<html" in response.text


def test_state_pages_have_no_write_route(client, runtime):
    runtime.state.set("pets", "rex", 1)
    headers = {**ORIGIN, "X-CSRF-Token": token(client, "/_console/cron")}
    for method in ("POST", "PUT", "DELETE"):
        assert client.request(method, "/_console/state/pets/rex", headers=headers).status_code in (404, 405)
    assert runtime.state.get("pets", "rex") == 1


# -- endpoints and the API reference ----------------------------------------------------------------


def test_endpoints_show_each_http_step_with_a_tester_prefilled_from_the_example(client):
    page = client.get("/_console/endpoints")
    assert page.status_code == 200
    text = page.text
    assert '<form class="tester" data-method="POST" data-path="/pets" data-root="">' in text
    assert 'data-method="GET" data-path="/pets/{id}"' in text
    assert 'data-path-param="id"' in text
    # The body textarea holds the model's example, escaped as text.
    body = re.search(r'<textarea name="body"[^>]*>(.*?)</textarea>', text, re.S)
    assert body and "&#34;name&#34;: &#34;Rex&#34;" in body[1]
    assert "What the pet answers to" in text  # the body schema's field descriptions
    assert "/health" not in text  # the gateway's own routes are on the API reference only
    assert "Welcome" not in text  # a queue step is no endpoint
    assert "x-request-id" in text and "/traces/" in text  # the tester links the answer to its trace


def test_endpoint_tester_prefills_a_skeleton_when_the_schema_has_no_example(tmp_path):
    class Order(BaseModel):
        customer: str
        quantity: int
        paid: bool = False

    registry = Registry()
    step(name="Order", triggers=[http("POST", "/orders", body=Order)], registry=registry)(lambda r, c: None)
    runtime = memory_runtime(tmp_path, registry)
    client = TestClient(Starlette(routes=[Mount("/_console", app=console_app(runtime, None))]))
    body = re.search(r'<textarea name="body"[^>]*>(.*?)</textarea>', client.get("/_console/endpoints").text, re.S)
    assert body and body[1].replace("&#34;", '"').split() == ["{", '"customer":', '"",', '"quantity":', "0,",
                                                             '"paid":', "false", "}"]  # fmt: skip
    runtime.close()


def test_api_reference_renders_the_openapi_document_server_side(client):
    page = client.get("/_console/api-reference")
    assert page.status_code == 200
    text = page.text
    for operation in ("POST</span> <code>/pets</code>", "GET</span> <code>/pets/{id}</code>", "<code>/health</code>"):
        assert operation in text
    assert "operationId CreatePet" in text
    assert "Idempotency-Key" in text  # a parameter of the POST
    assert "<h4>201 <span" in text and "<h4>400 <span" in text
    assert '<a href="/openapi.json">/openapi.json</a>' in text


# -- cron --------------------------------------------------------------------------------------------


def test_cron_page_shows_expression_time_zone_and_next_fire(client, runtime):
    page = client.get("/_console/cron")
    assert page.status_code == 200
    assert "<code>30 2 * * *</code>" in page.text
    assert "Europe/Paris" in page.text
    expected = next_fire("30 2 * * *", "Europe/Paris", "Reaper")
    assert expected is not None and expected > datetime.now(UTC)
    assert (expected.hour, expected.minute) == (2, 30)
    assert expected.strftime("%Y-%m-%d %H:%M:%S") in page.text
    assert "No fires recorded yet." in page.text


def test_fire_now_sends_the_cron_message_and_redirects_to_its_trace(client, runtime):
    csrf = token(client, "/_console/cron")
    fired = client.post("/_console/cron/Reaper/fire", data={"csrf_token": csrf}, headers=ORIGIN, follow_redirects=False)
    assert fired.status_code == 303
    assert fired.headers["location"].startswith("/_console/traces/")
    queue_name = runtime.actors["Reaper"].queue_name
    assert runtime.broker.queues[queue_name].qsize() == 1  # the fire's message, on the in-process broker

    page = client.get("/_console/cron")
    trace_id = fired.headers["location"].rsplit("/", 1)[1]
    assert f'href="/_console/traces/{trace_id}"' in page.text
    assert "by hand" in page.text
    assert "Last tick claimed" in page.text and "No fires recorded yet." not in page.text


def test_fire_now_of_an_unknown_step_is_a_404_and_fires_nothing(client, runtime):
    csrf = token(client, "/_console/cron")
    for name in ("Nope", "Welcome", "CreatePet"):
        response = client.post(f"/_console/cron/{name}/fire", data={"csrf_token": csrf}, headers=ORIGIN)
        assert response.status_code == 404
        assert "The cron steps are: Reaper" in response.text
    assert all(q.qsize() == 0 for q in runtime.broker.queues.values())


# -- queues and dead letters without RabbitMQ ---------------------------------------------------------


def test_queues_page_says_rabbitmq_is_needed_on_the_memory_broker(client):
    page = client.get("/_console/queues")
    assert page.status_code == 200
    assert "needs RabbitMQ, but this runtime uses the in-memory broker" in page.text


def test_dead_letters_say_rabbitmq_is_needed_and_unknown_steps_are_404(client):
    overview = client.get("/_console/dead-letters")
    assert overview.status_code == 200 and "needs RabbitMQ" in overview.text
    assert client.get("/_console/dead-letters/Welcome").status_code == 503
    for path in ("/_console/dead-letters/Nope", "/_console/dead-letters/Nope/m-1", "/_console/dead-letters/CreatePet"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Steps with dead-letter queues: Reaper, Welcome" in response.text
    assert "HTTP step" in client.get("/_console/dead-letters/CreatePet").text
    assert client.get("/_console/dead-letters/Welcome?limit=0").status_code == 400
    assert client.get("/_console/dead-letters/Welcome?limit=x").status_code == 400


def test_purge_without_the_step_name_confirmed_purges_nothing_and_says_why(client):
    csrf = token(client, "/_console/cron")
    for confirm in ({}, {"confirm": "Reaper"}, {"confirm": ""}):
        refused = client.post(
            "/_console/dead-letters/Welcome/purge", data={"csrf_token": csrf, **confirm}, headers=ORIGIN
        )
        assert refused.status_code == 400
        assert "Nothing was purged" in refused.text and "&#39;Welcome&#39;" in refused.text


POSTS = [
    "/_console/cron/Reaper/fire",
    "/_console/dead-letters/Welcome/replay",
    "/_console/dead-letters/Welcome/purge",
    "/_console/dead-letters/Welcome/m-1/replay",
]


@pytest.mark.parametrize("path", POSTS)
def test_every_post_without_a_csrf_token_or_same_site_origin_is_refused(client, runtime, path):
    csrf = token(client, "/_console/cron")
    forged = [
        ({"confirm": "Welcome"}, ORIGIN),  # no token
        ({"confirm": "Welcome", "csrf_token": "0" * 64}, ORIGIN),  # a wrong one
        ({"confirm": "Welcome", "csrf_token": csrf}, {"Origin": "http://evil.example"}),  # another site
    ]
    for data, headers in forged:
        response = client.post(path, data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403
        assert "Refused" in response.text
    assert all(q.qsize() == 0 for q in runtime.broker.queues.values())  # nothing fired or replayed
    assert runtime.state.last_cron_tick("Reaper") is None


def test_pages_escape_what_they_show(client, runtime):
    group = "<img src=x onerror=alert(1)>"  # a group name is one path segment: no "/" in it here
    runtime.state.set(group, SCRIPT, SCRIPT)
    for path in ("/_console/state", f"/_console/state/{group}", f"/_console/state/{group}/{SCRIPT}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert group not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text
        assert SCRIPT not in response.text
    assert ESCAPED in client.get(f"/_console/state/{group}/{SCRIPT}").text
    missing = client.get(f"/_console/dead-letters/{SCRIPT}")
    assert missing.status_code == 404 and SCRIPT not in missing.text


def test_the_tester_sends_to_the_gateways_own_path_which_answers_with_a_request_id(runtime):
    with TestClient(build_app(runtime)) as gateway:
        page = gateway.get("/_console/endpoints")
        assert page.status_code == 200
        assert 'data-method="POST" data-path="/pets" data-root=""' in page.text
        answer = gateway.post("/pets", json={"name": "Rex", "species": "dog"})
        assert answer.status_code == 201
        assert answer.headers["x-request-id"]  # what the tester's trace link is made of
