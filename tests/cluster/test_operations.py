"""The operator's tools on the cluster, with one node down: stats, dead-letter listing, replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from devtools.processes import ROOT, wait_for
from tests.cluster.deployment import Deployment
from tests.cluster.test_failures import enqueue

pytestmark = pytest.mark.cluster


def actors(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors", *args],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_CONFIG": str(deployment.config_path)},
        capture_output=True,
        text=True,
        timeout=90,
    )


def dead(deployment: Deployment, probe: str) -> list[dict[str, object]]:
    """The dead messages of Refuses that failed on ``probe``, as ``actors dlq list --json`` lists them."""
    listed = actors(deployment, "dlq", "list", "Refuses", "--json")
    assert listed.returncode == 0, listed.stderr
    [step] = json.loads(listed.stdout)["steps"]
    return [m for m in step["messages"] if probe in str(m["error"])]


def test_stats_dead_letters_and_replay_work_with_a_node_down(deployment: Deployment) -> None:
    probe = uuid.uuid4().hex
    enqueue(deployment, "cluster.refuses", {"id": probe})
    # In the dead-letter queue first, every node up: what is tried here is the tools, not a kill
    # in the middle of the dead-lettering.
    wait_for(lambda: dead(deployment, probe), 60, what="the dead message in the listing", interval=1)
    first = deployment.cluster.nodes[0]  # first in the config's list: every tool tries it first
    deployment.cluster.kill(first)
    try:
        [message] = wait_for(lambda: dead(deployment, probe), 60, what="the listing with a node down", interval=1)
        stats = actors(deployment, "stats")
        assert stats.returncode == 0 and "Refuses" in stats.stdout, stats.stderr
        deployment.state.set("fixed", probe, True)
        replayed = actors(deployment, "dlq", "replay", "Refuses", str(message["messageId"]))
        assert replayed.returncode == 0, replayed.stderr
        wait_for(lambda: deployment.state.get("refused", probe) == {"n": 2}, 60, what="the replay to run")
        print(f"\n[cluster ops] with {first.nodename} down: listed, stats, replayed {message['messageId']}")
    finally:
        deployment.cluster.restart(first)
