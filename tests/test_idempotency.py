"""``Idempotency-Key`` on HTTP steps: the gateway's app on a real RabbitMQ node, on both state backends.

No worker runs: the messages a request enqueued wait in the sink step's queue, where the tests
count them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from conveyor import AsyncContext, Context, Registry, Request, http, queue, step
from conveyor.config import load_config
from conveyor.gateway import build_app
from conveyor.gateway import idempotency as idempotency_module
from conveyor.runtime import Runtime
from devtools.localnode import LocalNode
from devtools.processes import purge, queue_depth
from tests.flow_support import own_vhost

SINK = "IdempotencySink"


class Order(BaseModel):
    item: str
    quantity: int


@pytest.fixture(scope="module")
def broker_url(rabbitmq: LocalNode) -> Iterator[str]:
    """A vhost of this module's own, so no other test's consumers or messages meet ours."""
    with own_vhost(rabbitmq, "idempotency") as url:
        yield url


class Steps:
    """The test's HTTP steps; each counts its runs in the state store (group ``runs``)."""

    def __init__(self) -> None:
        self.registry = Registry()
        #: Set by a test to hold the first run of ``Slow`` until it is set.
        self.release = threading.Event()
        self.release.set()
        self.slow_started = threading.Event()
        registry = self.registry

        @step(name="CreateOrder", triggers=[http("POST", "/orders", body=Order)], enqueues=["made"], registry=registry)
        async def create(request: Request, ctx: AsyncContext) -> dict[str, object]:
            await ctx.state.update("runs", "CreateOrder", [{"type": "increment", "path": "n", "by": 1}])
            order_id = uuid.uuid4().hex
            await ctx.enqueue("made", {"orderId": order_id, **request.body.model_dump()})
            return {"status": 201, "body": {"orderId": order_id}, "headers": {"Location": f"/orders/{order_id}"}}

        @step(name="SyncCreate", triggers=[http("PUT", "/sync/{name}")], enqueues=["made"], registry=registry)
        def sync_create(request: Request, ctx: Context) -> dict[str, object]:
            ctx.state.update("runs", "SyncCreate", [{"type": "increment", "path": "n", "by": 1}])
            ctx.enqueue("made", {"orderId": request.path_params["name"]}, delay=0.001)
            return {"status": 200, "body": {"name": request.path_params["name"], "run": uuid.uuid4().hex}}

        @step(name="Slow", triggers=[http("POST", "/slow")], enqueues=["made"], registry=registry)
        def slow(request: Request, ctx: Context) -> dict[str, object]:
            runs = ctx.state.update("runs", "Slow", [{"type": "increment", "path": "n", "by": 1}])["n"]
            if runs == 1:
                self.slow_started.set()
                assert self.release.wait(30), "the test never released the first run"
            ctx.enqueue("made", {"run": runs})
            return {"status": 201, "body": {"run": runs}}

        @step(name="Flaky", triggers=[http("POST", "/flaky")], enqueues=["made"], registry=registry)
        async def flaky(request: Request, ctx: AsyncContext) -> dict[str, object]:
            runs = (await ctx.state.update("runs", "Flaky", [{"type": "increment", "path": "n", "by": 1}]))["n"]
            await ctx.enqueue("made", {"run": runs})
            if runs == 1:
                return {"status": 503, "body": {"error": "not now"}}
            if runs == 2:
                raise RuntimeError("a crash in the handler")
            return {"status": 201, "body": {"run": runs}}

        step(name=SINK, triggers=[queue("made")], registry=registry)(lambda data, ctx: None)


class Gateway:
    """A gateway app serving ``steps`` (its RabbitMQ publisher attached), and its runtime."""

    def __init__(self, client: TestClient, runtime: Runtime, broker_url: str) -> None:
        self.client = client
        self.runtime = runtime
        self.broker_url = broker_url

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def sent(self) -> int:
        """Messages the requests enqueued (no worker takes them)."""
        return queue_depth(self.broker_url, self.runtime.actors[SINK].queue_name)

    def runs(self, step_name: str) -> int:
        """How many times ``step_name``'s handler ran."""
        value = self.runtime.state.get("runs", step_name)
        return int(value["n"]) if value else 0


@contextmanager
def gateway(
    tmp_path: Path, broker_url: str, where: str, steps: Steps, extra: str = "", *, fresh: bool = True
) -> Iterator[Gateway]:
    """A gateway on ``steps``; ``fresh``: the sink's queue emptied first."""
    state = f'url = "{where}"' if where.startswith("postgresql://") else f'path = "{where}"'
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(f'[broker]\nurl = "{broker_url}"\nheartbeat = 10\n[state]\n{state}\n[gateway]\n{extra}\n')
    runtime = Runtime(load_config(path), steps.registry)
    runtime.check()
    runtime.declare_queues()
    if fresh:
        purge(broker_url, [runtime.actors[SINK].queue_name])
    try:
        with TestClient(build_app(runtime), raise_server_exceptions=False) as client:
            yield Gateway(client, runtime, broker_url)
    finally:
        runtime.close()


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
def site(tmp_path: Path, broker_url: str, where: str, steps: Steps) -> Iterator[Gateway]:
    with gateway(tmp_path, broker_url, where, steps) as running:
        yield running


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": f"order-{uuid.uuid4()}"}


ORDER = {"item": "tea", "quantity": 2}


# -- a repeat ------------------------------------------------------------------------------------


def test_a_repeat_gets_the_stored_answer_and_runs_nothing(site: Gateway, broker_url: str) -> None:
    headers = new_key()
    first = site.post("/orders", json=ORDER, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = site.post("/orders", json=ORDER, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert site.runs("CreateOrder") == 1
    assert site.sent() == 1


def test_requests_without_a_key_run_every_time(site: Gateway, broker_url: str) -> None:
    answers = [site.post("/orders", json=ORDER) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert len({answer.json()["orderId"] for answer in answers}) == 3
    assert site.runs("CreateOrder") == 3
    assert site.sent() == 3


def test_a_def_handler_and_a_delayed_message_are_staged_the_same_way(site: Gateway, broker_url: str) -> None:
    headers = new_key()
    first = site.client.put("/sync/a", headers=headers)
    again = site.client.put("/sync/a", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert site.runs("SyncCreate") == 1
    # The 1 ms delay sends it through a delay queue first; it reaches the step's queue once.
    deadline = time.monotonic() + 20
    while site.sent() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert site.sent() == 1


def test_a_repeat_on_another_gateway_process_is_still_a_repeat(
    site: Gateway, tmp_path: Path, broker_url: str, where: str, steps: Steps
) -> None:
    headers = new_key()
    first = site.post("/orders", json=ORDER, headers=headers)
    with gateway(tmp_path, broker_url, where, steps, fresh=False) as other:
        again = other.post("/orders", json=ORDER, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert site.runs("CreateOrder") == 1
    assert site.sent() == 1


def test_the_same_key_on_a_different_request_is_a_422(site: Gateway, broker_url: str) -> None:
    headers = new_key()
    assert site.post("/orders", json=ORDER, headers=headers).status_code == 201
    for changed in (
        {"json": {"item": "tea", "quantity": 3}},  # another body
        {"json": ORDER, "params": {"coupon": "x"}},  # another query string
    ):
        answer = site.post("/orders", headers=headers, **changed)
        assert answer.status_code == 422
        assert "Idempotency-Key" in answer.json()["error"]
        assert "different request" in answer.json()["error"]
    assert site.runs("CreateOrder") == 1
    assert site.sent() == 1


def test_a_key_belongs_to_its_step(site: Gateway) -> None:
    headers = new_key()
    assert site.post("/orders", json=ORDER, headers=headers).status_code == 201
    assert site.client.put("/sync/b", headers=headers).status_code == 200
    assert (site.runs("CreateOrder"), site.runs("SyncCreate")) == (1, 1)


# -- concurrent requests -------------------------------------------------------------------------


def test_concurrent_requests_with_one_key_run_once(site: Gateway, steps: Steps, broker_url: str) -> None:
    steps.release.clear()
    headers = new_key()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(site.post, "/slow", headers=headers)
        assert steps.slow_started.wait(10)
        repeats = [pool.submit(site.post, "/slow", headers=headers) for _ in range(3)]
        time.sleep(0.3)  # let the repeats find the first still running
        steps.release.set()
        answers = [first.result(), *(repeat.result() for repeat in repeats)]
    assert [answer.status_code for answer in answers] == [201] * 4
    assert {answer.json()["run"] for answer in answers} == {1}
    assert sum(answer.headers.get("idempotent-replayed") == "true" for answer in answers) == 3
    assert site.runs("Slow") == 1
    assert site.sent() == 1


def test_a_repeat_gets_a_409_while_the_first_runs_on(
    site: Gateway, steps: Steps, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency_module, "WAIT_FOR_FIRST", 0.3)
    steps.release.clear()
    headers = new_key()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(site.post, "/slow", headers=headers)
        assert steps.slow_started.wait(10)
        busy = site.post("/slow", headers=headers)
        steps.release.set()
        assert first.result().status_code == 201
    assert busy.status_code == 409
    assert "still in progress" in busy.json()["error"]
    assert busy.headers["retry-after"] == "1"
    after = site.post("/slow", headers=headers)
    assert after.status_code == 201 and after.headers["idempotent-replayed"] == "true"
    assert site.runs("Slow") == 1
    assert site.sent() == 1


def test_a_claim_older_than_the_lease_is_taken_over_once(
    tmp_path: Path, broker_url: str, where: str, steps: Steps
) -> None:
    """The first request outlives its lease (as if its gateway had died): a repeat runs it again,
    and the first one's late answer neither overwrites that one's nor sends its messages."""
    steps.release.clear()
    headers = new_key()
    with gateway(tmp_path, broker_url, where, steps, "idempotency_lease = 1") as site:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(site.post, "/slow", headers=headers)
            assert steps.slow_started.wait(10)
            repeat = site.post("/slow", headers=headers)  # waits out the lease, then runs it
            steps.release.set()
            late = stuck.result()
        assert repeat.status_code == 201 and repeat.json() == {"run": 2}
        assert "idempotent-replayed" not in repeat.headers
        assert late.status_code == 201 and late.json() == {"run": 2}
        assert late.headers["idempotent-replayed"] == "true"
        assert site.runs("Slow") == 2
        assert site.post("/slow", headers=headers).json() == {"run": 2}
    assert site.sent() == 1


# -- failures release the key --------------------------------------------------------------------


def test_a_5xx_or_a_crash_releases_the_key_and_sends_nothing(site: Gateway, broker_url: str) -> None:
    headers = new_key()
    unavailable = site.post("/flaky", headers=headers)
    assert unavailable.status_code == 503
    crashed = site.post("/flaky", headers=headers)
    assert crashed.status_code == 500
    done = site.post("/flaky", headers=headers)
    assert done.status_code == 201 and done.json() == {"run": 3}
    assert site.post("/flaky", headers=headers).json() == {"run": 3}
    assert site.runs("Flaky") == 3
    assert site.sent() == 1  # only the run that answered 201 sent its message


def test_a_state_store_outage_is_a_503_and_the_retry_runs_once(
    tmp_path: Path, broker_url: str, steps: Steps, postgres: object
) -> None:
    from devtools.postgres import PostgresServer

    assert isinstance(postgres, PostgresServer)
    headers = new_key()
    with gateway(tmp_path, broker_url, postgres.url, steps) as site:
        site.runtime.state.clear("runs")
        postgres.stop()
        try:
            down = site.post("/orders", json=ORDER, headers=headers)
        finally:
            postgres.start()
        assert down.status_code == 503
        assert "state store" in down.json()["error"]
        deadline = time.monotonic() + 20
        while (answer := site.post("/orders", json=ORDER, headers=headers)).status_code == 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.status_code == 201
        assert site.post("/orders", json=ORDER, headers=headers).json() == answer.json()
        assert site.runs("CreateOrder") == 1
    assert site.sent() == 1


# -- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"x" * 256, "clé".encode("latin-1"), b"tab\there", [b"one", b"two"]],
    ids=["too-long", "not-ascii", "control-character", "twice"],
)
def test_a_malformed_key_is_a_400_naming_the_header(
    tmp_path: Path, broker_url: str, steps: Steps, value: bytes | list[bytes]
) -> None:
    with gateway(tmp_path, broker_url, str(tmp_path / "state.db"), steps) as site:
        values = value if isinstance(value, list) else [value]
        answer = site.client.post("/orders", json=ORDER, headers=[(b"Idempotency-Key", one) for one in values])
        assert answer.status_code == 400
        body = answer.json()
        assert body["error"].startswith("Invalid Idempotency-Key header")
        assert body["fields"][0]["field"] == "Idempotency-Key"
        assert site.runs("CreateOrder") == 0
        assert site.post("/orders", json=ORDER, headers={"Idempotency-Key": "x" * 255}).status_code == 201


def test_openapi_declares_the_header_and_its_answers(tmp_path: Path, broker_url: str, steps: Steps) -> None:
    with gateway(tmp_path, broker_url, str(tmp_path / "state.db"), steps) as site:
        document = site.client.get("/openapi.json").json()
    for path, method in (("/orders", "post"), ("/sync/{name}", "put"), ("/slow", "post")):
        operation = document["paths"][path][method]
        header = next(p for p in operation["parameters"] if p["in"] == "header")
        assert header["name"] == "Idempotency-Key" and header["required"] is False
        assert header["schema"]["maxLength"] == 255
        assert {"400", "409", "422"} <= set(operation["responses"])
    health = document["paths"]["/health"]["get"]
    assert all(p.get("in") != "header" for p in health.get("parameters", []))
