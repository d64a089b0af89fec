"""Processes dying at the worst moments on the cluster: a worker mid-handler, a worker killed by its own
message, a writer between its commit and its publish; and a configuration quorum queues cannot serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from devtools.processes import ROOT, queue_depth, wait_for
from tests.cluster.deployment import DELIVERY_LIMIT, NAME, Deployment

POISON_XQ = f"{NAME}.cluster-probes.Poison.XQ"

pytestmark = pytest.mark.cluster


def enqueue(deployment: Deployment, topic: str, probe: dict[str, object]) -> None:
    response = httpx.post(f"{deployment.gateway_url(1)}/_cluster/{topic}", json=probe, timeout=10)
    assert response.status_code == 202, response.text


def test_worker_killed_mid_handler_is_redelivered_and_its_effect_happens_once(deployment: Deployment) -> None:
    probe = uuid.uuid4().hex
    enqueue(deployment, "cluster.slow", {"id": probe, "sleep": 3.0})
    started = wait_for(lambda: deployment.state.get("slow-started", probe), 30, what="the slow handler to start")
    [pid] = [int(p) for p in started]
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    counted = wait_for(lambda: deployment.state.get("counted", probe), 90, what="the redelivered message to finish")
    runs = deployment.state.get("slow-started", probe)
    print(
        f"\n[cluster 4] handler ran in pids {sorted(runs)}; redelivered and done {time.monotonic() - killed:.1f}s "
        f"after the kill; worker restarts {deployment.restarts}"
    )
    assert counted["pid"] != pid and len(runs) >= 2
    assert deployment.state.get("effects", "total")["n"] == len(deployment.state.items("counted"))


def test_message_that_kills_its_worker_is_dead_lettered_after_the_delivery_limit(deployment: Deployment) -> None:
    probe = uuid.uuid4().hex
    node_url = deployment.cluster.urls[1]
    in_dlq = queue_depth(node_url, POISON_XQ)
    enqueue(deployment, "cluster.poison", {"id": probe})
    wait_for(lambda: queue_depth(node_url, POISON_XQ) > in_dlq, 240, what="the poison message in its .XQ", interval=1)
    deliveries = deployment.state.get("poison-deliveries", probe)["n"]
    time.sleep(5)  # nothing delivers it again
    print(f"\n[cluster 5] delivered {deliveries} times (limit {DELIVERY_LIMIT}), then dead-lettered to {POISON_XQ}")
    assert 1 <= deliveries <= DELIVERY_LIMIT + 1
    assert deployment.state.get("poison-deliveries", probe)["n"] == deliveries


def test_writer_killed_between_commit_and_publish_is_swept_once(deployment: Deployment) -> None:
    key = uuid.uuid4().hex
    write = (
        "import sys; from conveyor.runtime import boot; runtime = boot(); "
        f"runtime.state.set('swept', {key!r}, {{'n': 1}}); sys.exit('published, but should have died')"
    )
    done = subprocess.run(
        [sys.executable, "-c", write],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_CONFIG": str(deployment.config_path), "CONVEYOR_FAULT_EXIT_AFTER_COMMIT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "published" not in done.stderr, done.stderr[-2000:]
    assert deployment.state.get("swept", key) == {"n": 1}  # committed
    died = time.monotonic()
    wait_for(lambda: deployment.state.get("swept-seen", key), 60, what="a sweep to publish the trigger")
    swept_after = time.monotonic() - died
    time.sleep(12)  # another sweep has passed meanwhile
    print(f"\n[cluster 6] trigger of the killed writer published by a sweep {swept_after:.1f}s later, seen once")
    assert deployment.state.get("swept-seen", key) == {"n": 1}


def test_quorum_queues_with_a_priority_step_refuse_to_start(deployment: Deployment) -> None:
    config = deployment.write_config(deployment.base / "priority.toml", {"ProcessOrder": 'priority = "high"\n'})
    done = subprocess.run(
        [sys.executable, "-m", "scheduler"],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(f"\n[cluster 8] {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '(no output)'}")
    assert done.returncode != 0
    assert "ProcessOrder" in done.stderr and "quorum" in done.stderr
    assert "Traceback" not in done.stderr
