"""[project] name: every step queue carries the deployment's name, so deployments on one vhost stay apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from conveyor import ConfigError, Registry, queue, step
from conveyor.config import load_config, parse_config
from conveyor.runtime import Runtime
from devtools.processes import queue_depth, wait_for
from tests.helpers import memory_runtime


def _registry() -> Registry:
    registry = Registry()

    @step(name="Collect", flows=["shop", "audit"], triggers=[queue("collect")], registry=registry)
    def collect(data: Any, ctx: Any) -> None:
        ctx.state.set("collected", data["id"], data)

    step(name="Loner", triggers=[queue("loner")], registry=registry)(lambda data, ctx: None)
    return registry


@pytest.mark.parametrize("name", ["conveyor", "shop", "shop-staging", "dev_alice", "Team2", "a" * 40])
def test_good_names_are_accepted(name: str) -> None:
    assert parse_config({"project": {"name": name}}).project.name == name


@pytest.mark.parametrize("name", ["", "shop.staging", "my shop", "-shop", "a" * 41, "café", "amq", "AMQ"])
def test_bad_names_stop_start_up_saying_what_a_name_may_hold(name: str) -> None:
    with pytest.raises(ConfigError, match=r"project\.name: expected a (short name|name other than 'amq')"):
        parse_config({"project": {"name": name}})


def test_the_name_defaults_to_conveyor_and_conveyor_name_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_config({}).project.name == "conveyor"
    path = tmp_path / "config.toml"
    path.write_text('[project]\nname = "shop"\n')
    assert load_config(path).project.name == "shop"
    monkeypatch.setenv("CONVEYOR_NAME", "shop-test")
    assert load_config(path).project.name == "shop-test"


def test_queues_are_named_deployment_flow_step(tmp_path: Path) -> None:
    runtime = memory_runtime(tmp_path, _registry(), '[project]\nname = "shop-dev"\n')
    # The first flow only; a step in no flow goes straight under the deployment.
    assert runtime.actors["Collect"].queue_name == "shop-dev.shop.Collect"
    assert runtime.actors["Loner"].queue_name == "shop-dev.Loner"
    # Actors keep the step's name: messages, dead-letter records and `dlq STEP` use it.
    assert runtime.actors["Collect"].actor_name == "Collect"
    runtime.publisher.publish("collect", {"id": "1"})
    assert runtime.broker.queues["shop-dev.shop.Collect"].qsize() == 1
    assert "shop-dev.shop.Collect.DQ" in runtime.broker.queues


@pytest.fixture
def deployments(rabbitmq: Any, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes with the same steps on the same vhost, named apart."""
    suffix = uuid.uuid4().hex[:6]
    made = []
    for name in (f"alice-{suffix}", f"bob-{suffix}"):
        config = parse_config(
            {
                "project": {"name": name},
                "broker": {"url": rabbitmq.url, "heartbeat": 10},
                "state": {"path": str(tmp_path / f"{name}.db")},
            }
        )
        runtime = Runtime(config, _registry())
        runtime.declare_queues()
        made.append(runtime)
    yield made[0], made[1]
    for runtime in made:
        runtime.close()


def test_two_deployments_on_one_vhost_never_take_each_others_messages(rabbitmq: Any, deployments: Any) -> None:
    alice, bob = deployments
    worker = dramatiq.Worker(alice.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        bob.publisher.publish("collect", {"id": "bob-1"})
        alice.publisher.publish("collect", {"id": "alice-1"})
        wait_for(lambda: alice.state.get("collected", "alice-1"), timeout=15, what="alice's worker")

        # Alice's worker took only her message; Bob's waits in his own queue for his workers.
        assert alice.state.get("collected", "bob-1") is None
        assert queue_depth(rabbitmq.url, bob.actors["Collect"].queue_name) == 1
        assert queue_depth(rabbitmq.url, alice.actors["Collect"].queue_name) == 0
    finally:
        worker.stop()

    worker = dramatiq.Worker(bob.broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: bob.state.get("collected", "bob-1"), timeout=15, what="bob's worker")
        assert bob.state.get("collected", "alice-1") is None
    finally:
        worker.stop()
