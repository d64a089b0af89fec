"""The gateway's request handling and JSON errors, on a StubBroker runtime (no server needed)."""

from __future__ import annotations

import logging

import dramatiq
import pytest
from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from conveyor import AsyncContext, Context, Registry, Request, http, queue, step
from conveyor.gateway import build_app
from tests.helpers import memory_runtime, payloads


class Body(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


class Query(BaseModel):
    limit: int = Field(default=10, le=100)


@pytest.fixture
def runtime(tmp_path):
    registry = Registry()

    @step(name="Create", triggers=[http("POST", "/things", body=Body)], enqueues=["things"], registry=registry)
    async def create(request: Request, ctx: AsyncContext) -> dict:
        await ctx.state.set("things", request.body.name, request.body.model_dump())
        await ctx.enqueue("things", request.body)
        return {"status": 201, "body": request.body}

    @step(name="ListThings", triggers=[http("GET", "/things", query=Query)], registry=registry)
    def list_things(request: Request, ctx: Context) -> dict:
        return {"status": 200, "body": {"limit": request.query.limit}}

    @step(name="Get", triggers=[http("GET", "/things/:name")], registry=registry)
    def get(request: Request, ctx: Context) -> dict:
        return {"status": 200, "body": {"name": request.path_params["name"]}}

    @step(name="Crash", triggers=[http("POST", "/crash")], registry=registry)
    def crash(request: Request, ctx: Context) -> dict:
        raise RuntimeError("secret internals")

    step(name="Consume", triggers=[queue("things", input=Body)], registry=registry)(lambda b, c: None)
    return memory_runtime(tmp_path, registry, "[gateway]\nmax_body_size = 2048\n")


@pytest.fixture
def client(runtime):
    with TestClient(build_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_nothing_happened(runtime):
    assert payloads(runtime, "Consume") == []
    assert runtime.state.list("things") == []


def test_valid_request_is_stored_enqueued_and_answered(client, runtime):
    response = client.post("/things", json={"name": "a", "count": 2})
    assert response.status_code == 201
    assert response.json() == {"name": "a", "count": 2}
    assert response.headers["x-request-id"]
    assert payloads(runtime, "Consume") == [{"name": "a", "count": 2}]


def test_invalid_body_names_each_failing_field(client, runtime):
    response = client.post("/things", json={"name": "", "count": "many", "extra": 1})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Invalid request body"
    assert {f["field"] for f in body["fields"]} == {"name", "count"}
    assert all(f["reason"] for f in body["fields"])
    assert_nothing_happened(runtime)


def test_missing_fields_are_named(client, runtime):
    response = client.post("/things", json={})
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["fields"]] == ["name", "count"]
    assert_nothing_happened(runtime)


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"name": "a", "count": 1', b'{"name": NaN, "count": 1}', b'{"count": Infinity}', b"\xff\xfe"],
)
def test_malformed_json_is_a_400(client, runtime, raw):
    response = client.post("/things", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed JSON")
    assert_nothing_happened(runtime)


def test_deeply_nested_json_is_a_400_not_a_crash(tmp_path):
    registry = Registry()
    step(name="Deep", triggers=[http("POST", "/deep", body=Body)], registry=registry)(lambda r, c: {})
    runtime = memory_runtime(tmp_path, registry, "[gateway]\nmax_body_size = 100000\n")
    with TestClient(build_app(runtime)) as client:
        response = client.post(
            "/deep", content=b"[" * 10000 + b"]" * 10000, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]


def test_empty_body_is_a_400(client, runtime):
    response = client.post("/things", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": "Request body is empty; send a JSON object"}


def test_non_json_content_type_is_a_415(client, runtime):
    response = client.post("/things", content=b"name=a", headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert_nothing_happened(runtime)


def test_body_over_the_limit_is_a_413(client, runtime):
    response = client.post("/things", json={"name": "x" * 5000, "count": 1})
    assert response.status_code == 413
    assert response.json()["limit"] == 2048
    assert_nothing_happened(runtime)


def test_chunked_body_over_the_limit_is_a_413(client, runtime):
    def chunks():
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'", "count": 1}'

    response = client.post("/things", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_nothing_happened(runtime)


def test_query_is_validated(client):
    assert client.get("/things?limit=5").json() == {"limit": 5}
    response = client.get("/things?limit=500")
    assert response.status_code == 400
    assert response.json()["fields"][0]["field"] == "limit"


def test_path_params_reach_the_handler(client):
    assert client.get("/things/abc").json() == {"name": "abc"}
    assert client.head("/things/abc").status_code == 200


def test_unknown_route_and_method_are_json(client):
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "No route for GET /nope"}
    wrong = client.delete("/things")
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "Method DELETE is not allowed on /things"}
    assert "GET" in wrong.headers["allow"]


def test_handler_crash_is_a_500_with_request_id_and_no_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger="conveyor.gateway"):
        response = client.post("/crash", headers={"x-request-id": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "requestId": "req-42"}
    assert "secret internals" not in response.text
    assert any("req-42" in r.getMessage() and r.exc_info for r in caplog.records)


def test_enqueue_the_broker_refuses_is_a_503(client, runtime, monkeypatch):
    def refuse(*args, **kwargs):
        raise dramatiq.errors.ConnectionClosed(OSError("broker down"))

    monkeypatch.setattr(runtime.broker, "enqueue", refuse)
    response = client.post("/things", json={"name": "a", "count": 1})
    assert response.status_code == 503
    assert "did not confirm" in response.json()["error"]


def test_health_reports_components(client):
    assert client.get("/health").json() == {"status": "ok", "rabbitmq": "ok", "state": "ok"}


def test_declared_response_model_shapes_the_body_and_raw_json_reaches_model_less_routes(tmp_path):
    class Public(BaseModel):
        name: str

    class Tags(BaseModel):
        tag: list[str] = []

    registry = Registry()
    step(
        name="Shaped",
        triggers=[http("GET", "/shaped", responses={200: Public})],
        registry=registry,
    )(lambda r, c: {"status": 200, "body": {"name": "x", "secret": "hidden"}})
    step(name="Echo", triggers=[http("POST", "/echo")], registry=registry)(
        lambda r, c: {"status": 200, "body": {"got": r.body}}
    )
    step(name="Tagged", triggers=[http("GET", "/tagged", query=Tags)], registry=registry)(
        lambda r, c: {"status": 200, "body": r.query.tag}
    )
    runtime = memory_runtime(tmp_path, registry)
    with TestClient(build_app(runtime)) as client:
        assert client.get("/shaped").json() == {"name": "x"}
        assert client.post("/echo", json={"a": [1]}).json() == {"got": {"a": [1]}}
        assert client.post("/echo").json() == {"got": None}
        assert client.get("/tagged?tag=a").json() == ["a"]
        assert client.get("/tagged?tag=a&tag=b").json() == ["a", "b"]
