"""Two schedulers and a one-second cron: one fire per tick when one of them is killed or frozen."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.scheduling import cron_message_id
from devtools.processes import wait_for
from tests.cluster.deployment import Deployment

pytestmark = pytest.mark.cluster

STEP = "EverySecond"


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def ticks(first: int, count: int) -> list[datetime]:
    return [datetime.fromtimestamp(first + n, UTC) for n in range(count)]


def fires(deployment: Deployment, window: list[datetime]) -> tuple[list[str | None], list[int]]:
    """Who claimed each tick, and how many times its message ran."""
    claimed = [deployment.state.cron_fired_by(STEP, tick) for tick in window]
    runs = [(deployment.state.get("cron-runs", cron_message_id(STEP, tick)) or {"n": 0})["n"] for tick in window]
    return claimed, runs


def wait_runs(deployment: Deployment, window: list[datetime]) -> tuple[list[str | None], list[int]]:
    wait_for(lambda: all(fires(deployment, window)[1]), 30, what="every tick's message to run", interval=0.5)
    time.sleep(2)  # a second run of some tick would show by now
    return fires(deployment, window)


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_each_tick_fires_once_when_one_of_two_schedulers_is_killed_halfway(deployment: Deployment) -> None:
    first = int(time.time()) + 2
    sleep_until(first + 10)
    deployment.kill("scheduler1")
    sleep_until(first + 20)
    window = ticks(first, 20)
    claimed, runs = wait_runs(deployment, window)
    deployment.start_scheduler(1)
    winners = {name: claimed.count(name) for name in set(claimed)}
    print(f"\n[cluster 3] 20 ticks: claims by scheduler {winners}; runs per tick {sorted(set(runs))}")
    assert None not in claimed  # no gap
    assert runs == [1] * 20  # exactly one fire, one run per tick


def test_each_tick_fires_once_when_a_scheduler_freezes_inside_its_claim(deployment: Deployment) -> None:
    frozen = deployment.processes.start("scheduler3", "-m", "scheduler", env={"CONVEYOR_FAULT_STOP_IN_CLAIM": "1"})
    try:
        wait_for(lambda: stopped(frozen.pid), 60, what="the scheduler to freeze in its claim", interval=0.1)
        froze = time.time()
        time.sleep(5)
        frozen.send_signal(signal.SIGCONT)
        sleep_until(froze + 10)
        window = ticks(int(froze) - 3, 13)
        claimed, runs = wait_runs(deployment, window)
    finally:
        deployment.processes.stop("scheduler3")
    winners = {name: claimed.count(name) for name in set(claimed)}
    print(
        f"\n[cluster 3, SIGSTOP] frozen 5 s inside a claim; 13 ticks around it: claims {winners}; "
        f"runs per tick {sorted(set(runs))}"
    )
    assert None not in claimed
    assert runs == [1] * 13
