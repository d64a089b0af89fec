"""The gateway's /_admin endpoints: the API key (unit, in-memory broker) and the dead-letter queue over HTTP (real)."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from starlette.testclient import TestClient

from conveyor import AsyncContext, ConfigError, Context, Registry, Request, http, queue, step
from conveyor.gateway import build_app
from conveyor.gateway.admin import presented_key
from devtools.processes import wait_for
from tests.flows.replay_probes import DONE, FIXED
from tests.helpers import memory_runtime, step_queue
from tests.operator_helpers import empty_queues, forget_records, queue_depth, runtime_for, stop, with_management_url
from tests.system import System

KEY = "test-admin-key-" + "0123456789abcdef"
STEP = "FailsUntilFixed"
TOPIC = "test.fails-until-fixed"
MISSING = "Missing API key: send it in an X-API-Key header or as Authorization: Bearer <key>"


def registry_with_one_step() -> Registry:
    registry = Registry()
    step(name="Work", triggers=[queue("work")], registry=registry)(lambda data, ctx: None)
    return registry


@pytest.fixture
def client(tmp_path):
    runtime = memory_runtime(tmp_path, registry_with_one_step(), f'[admin]\napi_key = "{KEY}"\n')
    with TestClient(build_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_without_a_key_configured_every_admin_route_is_404(tmp_path):
    runtime = memory_runtime(tmp_path, registry_with_one_step())
    with TestClient(build_app(runtime)) as unconfigured:
        for method, path in [("GET", "/_admin/stats"), ("GET", "/_admin/dead-letters"), ("DELETE", "/_admin/x")]:
            response = unconfigured.request(method, path, headers={"X-API-Key": KEY})
            assert response.status_code == 404
            assert response.json() == {"error": f"No route for {method} {path}"}


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, MISSING),
        ({"X-API-Key": ""}, MISSING),
        ({"X-API-Key": KEY[:-1]}, "Invalid API key"),
        ({"Authorization": f"Bearer {KEY}x"}, "Invalid API key"),
        ({"Authorization": f"Basic {KEY}"}, MISSING),
    ],
)
def test_missing_or_wrong_key_is_401(client, headers, error):
    response = client.get("/_admin/dead-letters/Work/some-id", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": error}
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_right_key_passes_and_the_memory_broker_says_it_cannot_help(client, headers):
    response = client.get("/_admin/stats", headers=headers)
    assert response.status_code == 501
    assert "needs RabbitMQ, but this runtime uses the in-memory broker" in response.json()["error"]
    assert client.get("/_admin/nothing-here", headers=headers).status_code == 404
    assert client.post("/_admin/stats", headers=headers).status_code == 405


def test_the_key_is_never_logged(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/_admin/stats", headers={"X-API-Key": KEY})
        client.get("/_admin/stats", headers={"X-API-Key": KEY + "-wrong"})
        client.get("/_admin/stats", headers={"Authorization": f"Bearer {KEY}"})
    assert "Refused GET /_admin/stats" in caplog.text
    assert KEY not in caplog.text


def test_key_is_read_from_either_header():
    assert presented_key([(b"x-api-key", b" k1 ")]) == b"k1"
    assert presented_key([(b"authorization", b"Bearer k2")]) == b"k2"
    assert presented_key([(b"authorization", b"bearer  k3 ")]) == b"k3"
    assert presented_key([(b"authorization", b"Bearer ")]) is None
    assert presented_key([]) is None


def test_a_step_may_not_claim_an_admin_path(tmp_path):
    registry = registry_with_one_step()

    @step(name="Sneaky", triggers=[http("GET", "/_admin/stats")], registry=registry)
    def sneaky(request: Request, ctx: Context) -> dict:
        return {"status": 200, "body": {}}

    with pytest.raises(ConfigError, match="paths under /_admin are reserved"):
        build_app(memory_runtime(tmp_path, registry))


@pytest.fixture(scope="module")
def system(rabbitmq, tmp_path_factory):
    running = System(
        tmp_path_factory.mktemp("admin"),
        rabbitmq.url,
        extra_config=f"""
[admin]
api_key = "{KEY}"
[steps.FailsUntilFixed]
max_retries = 0
""",
    )
    with_management_url(running, rabbitmq.management_url)
    running.start_workers(processes=1, threads=2)
    running.start_gateway()
    running.http.headers["X-API-Key"] = KEY
    yield running
    stop(running)
    empty_queues(rabbitmq.url, STEP)


@pytest.fixture(scope="module")
def runtime(system):
    with runtime_for(system) as built:
        yield built


def test_dead_letters_over_http(system, runtime, rabbitmq):
    empty_queues(rabbitmq.url, STEP)
    forget_records(system)
    probes = {runtime.publisher.send(STEP, {"id": p}, topic=TOPIC): p for p in (uuid.uuid4().hex, uuid.uuid4().hex)}
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 2, timeout=15)
    first, second = probes

    overview = system.http.get("/_admin/dead-letters").json()
    [mine] = [s for s in overview["steps"] if s["step"] == STEP]
    assert mine["count"] == 2
    assert {m["messageId"]: m["error"] for m in mine["messages"]} == {
        m: f"RuntimeError: not fixed yet: {p}" for m, p in probes.items()
    }
    [one] = system.http.get(f"/_admin/dead-letters/{STEP}?limit=1").json()["messages"]
    assert one["messageId"] in probes
    assert system.http.get(f"/_admin/dead-letters/{STEP}?limit=0").status_code == 400

    shown = system.http.get(f"/_admin/dead-letters/{STEP}/{first}")
    assert shown.status_code == 200
    assert shown.json()["data"] == {"id": probes[first]}
    assert system.http.get(f"/_admin/dead-letters/{STEP}/nope").status_code == 404
    assert system.http.get("/_admin/dead-letters/Nope").status_code == 404

    system.state.set(FIXED, probes[first], True)
    replayed = system.http.post(f"/_admin/dead-letters/{STEP}/{first}/replay")
    assert replayed.status_code == 200
    [replay] = replayed.json()["replayed"]
    assert replay["messageId"] == first
    assert replay["traceId"] == shown.json()["traceId"]  # the replay stays in the trace of the message that died
    done = wait_for(lambda: system.state.get(DONE, probes[first]))
    assert (done["attempt"], done["traceId"], done["replayedFromMessage"]) == (1, replay["traceId"], first)

    system.state.set(FIXED, probes[second], True)
    all_replayed = system.http.post(f"/_admin/dead-letters/{STEP}/replay").json()["replayed"]
    assert [r["messageId"] for r in all_replayed] == [second]
    wait_for(lambda: system.state.get(DONE, probes[second]))

    runtime.publisher.send(STEP, {"id": "never-fixed"}, topic=TOPIC)
    wait_for(lambda: queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ") == 1, timeout=15)
    purged = system.http.delete(f"/_admin/dead-letters/{STEP}")
    assert purged.json() == {"step": STEP, "purged": 1, "records": 1}


def test_stats_over_http(system):
    response = system.http.get("/_admin/stats")
    assert response.status_code == 200
    mine = next(s for s in response.json()["steps"] if s["step"] == STEP)
    assert mine["declared"] is True
    assert system.http.get("/_admin/stats", headers={"X-API-Key": "wrong-key-wrong-key"}).status_code == 401


def test_the_key_appears_in_no_process_log(system):
    system.http.get("/_admin/stats", headers={"X-API-Key": KEY + "-wrong"})
    system.http.get("/_admin/stats", headers={"Authorization": f"Bearer {KEY}"})
    assert "Refused GET /_admin/stats" in system.log("gateway")
    for name in ("gateway", "workers"):
        assert KEY not in system.log(name)


def test_the_loop_probe_shows_a_handler_that_blocks_the_event_loop(tmp_path):
    registry = Registry()

    @step(name="Blocks", triggers=[http("POST", "/blocks")], registry=registry)
    async def blocks(request: Request, ctx: AsyncContext) -> dict:
        time.sleep(0.3)  # the mistake the probe is there to show: a blocking call in an async def handler
        return {"status": 200, "body": {}}

    runtime = memory_runtime(tmp_path, registry, f'[admin]\napi_key = "{KEY}"\n')
    with TestClient(build_app(runtime)) as client:
        headers = {"X-API-Key": KEY}
        assert client.post("/_admin/loop/reset", headers=headers).json()["lag_ms"]["samples"] == 0
        assert client.post("/blocks").status_code == 200
        wait_for(
            lambda: client.get("/_admin/loop", headers=headers).json()["lag_ms"]["max"] >= 250,
            10,
            what="the probe to see the 300 ms the loop was blocked",
        )
        figures = client.get("/_admin/loop", headers=headers).json()
        assert figures["lag_ms"]["samples"] >= 1 and figures["interval_ms"] == 20
        assert figures["blocked_ms"]["max"] >= 250  # the loop's own doing, not a wait for a core
        assert client.get("/_admin/loop").status_code == 401
