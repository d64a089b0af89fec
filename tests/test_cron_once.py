"""Cron with several schedulers: each tick fires its step exactly once, under kill -9 and SIGSTOP,
on PostgreSQL and on SQLite; missed ticks are logged, not fired late."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import psycopg
import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from conveyor import Context, Registry, cron, step
from conveyor.declare.cron_expressions import parse_cron
from conveyor.scheduling import CronFirer, fire_cron_step, schedule_cron_steps
from conveyor.scheduling.cron import cron_message_id
from devtools.processes import purge, wait_for
from tests.helpers import memory_runtime
from tests.system import System

STEP = "EverySecond"

# -- in one process ---------------------------------------------------------------------------


def cron_runtime(tmp_path: Path):
    registry = Registry()

    @step(name=STEP, triggers=[cron("* * * * * *")], registry=registry)
    def every_second(_: None, ctx: Context) -> None:
        pass

    return memory_runtime(tmp_path, registry)


def message_ids(runtime) -> list[str]:
    return [
        dramatiq.Message.decode(raw).message_id
        for raw in list(runtime.broker.queues[runtime.actors[STEP].queue_name].queue)
    ]


def test_two_schedulers_firing_one_tick_publish_it_once(tmp_path):
    first, second = cron_runtime(tmp_path), cron_runtime(tmp_path)  # one state file, two brokers
    tick = datetime(2026, 3, 4, 10, 0, 31, tzinfo=UTC)
    assert CronFirer(first).fire(STEP, tick) == cron_message_id(STEP, tick)
    assert CronFirer(second).fire(STEP, tick) is None
    assert CronFirer(second).fire(STEP, tick + timedelta(seconds=1)) == cron_message_id(
        STEP, tick + timedelta(seconds=1)
    )
    assert message_ids(first) == [cron_message_id(STEP, tick)]
    assert message_ids(second) == [cron_message_id(STEP, tick + timedelta(seconds=1))]
    assert first.state.cron_fired_by(STEP, tick) is not None


def test_the_executor_hands_the_scheduled_time_and_the_job_claims_it(tmp_path):
    runtime = cron_runtime(tmp_path)
    scheduler = schedule_cron_steps(runtime, BackgroundScheduler(timezone="UTC"))
    scheduler.start()
    try:
        wait_for(lambda: len(message_ids(runtime)) >= 2, timeout=10, what="two fires")
    finally:
        scheduler.shutdown(wait=True)
    with runtime.state._reader() as db:  # noqa: SLF001 - a look at the claims table itself
        ticks = [datetime.fromisoformat(t) for (t,) in db.execute("SELECT tick FROM cron_fires").fetchall()]
    assert all(tick.microsecond == 0 for tick in ticks)  # the schedule's seconds, never "now"
    assert message_ids(runtime) == [cron_message_id(STEP, tick) for tick in sorted(ticks)]


def test_a_tick_missed_beyond_the_grace_time_is_logged_not_fired(tmp_path, caplog):
    runtime = cron_runtime(tmp_path)
    scheduler = schedule_cron_steps(runtime, BackgroundScheduler(timezone="UTC"))
    scheduled = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=90)
    scheduler.reschedule_job(STEP, trigger=parse_cron("0 0 1 1 *"))  # nothing else due before the test ends
    scheduler.modify_job(STEP, next_run_time=scheduled)
    with caplog.at_level(logging.WARNING, logger="conveyor.scheduler"):
        scheduler.start()
        try:
            wait_for(lambda: "missed its tick" in caplog.text, timeout=10, what="the missed tick's warning")
        finally:
            scheduler.shutdown(wait=True)
    assert f"Cron step {STEP} missed its tick at {scheduled.isoformat()}" in caplog.text
    assert runtime.state.cron_fired_by(STEP, scheduled) is None


def test_ticks_nobody_fired_while_every_scheduler_was_down_are_reported_at_start(tmp_path, caplog):
    runtime = cron_runtime(tmp_path)
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=100)
    assert runtime.state.claim_cron_fire(STEP, last, fired_by="gone:1")
    with caplog.at_level(logging.WARNING, logger="conveyor.scheduler"):
        schedule_cron_steps(runtime, BackgroundScheduler(timezone="UTC"))
    (line,) = [r.getMessage() for r in caplog.records if "tick(s) from" in r.getMessage()]
    print(line)
    assert line.startswith(f"Cron step {STEP} missed ")
    assert (last + timedelta(seconds=1)).isoformat() in line


def test_every_scheduler_sweeps_the_outbox_and_a_manual_fire_still_works(tmp_path):
    runtime = cron_runtime(tmp_path)  # no step watches state
    scheduler = schedule_cron_steps(runtime, BackgroundScheduler(timezone="UTC"))
    assert scheduler.get_job("conveyor.sweep-outbox") is not None
    assert scheduler.get_job("conveyor.prune-cron-fires") is not None
    first, second = fire_cron_step(runtime, STEP), fire_cron_step(runtime, STEP)
    assert first != second and len(message_ids(runtime)) == 2


# -- real schedulers ----------------------------------------------------------------------------

FLOW = """
from conveyor import Context, cron, step


@step(name="EverySecond", triggers=[cron("* * * * * *")])
def every_second(_: None, ctx: Context) -> None:
    ctx.state.update("runs", ctx.message_id, [{"type": "increment", "path": "n"}])
"""


def cron_system(tmp_path: Path, rabbitmq, state_url: str | None) -> System:
    package = tmp_path / "cron_once_flow"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "every_second.py").write_text(FLOW)
    system = System(tmp_path, rabbitmq.url, flows=["cron_once_flow"], state_url=state_url)
    system.env["PYTHONPATH"] = str(tmp_path)
    purge(rabbitmq.url, [STEP])  # nothing left from an earlier test
    if state_url is not None:
        system.state.check()  # type: ignore[attr-defined]
        with psycopg.connect(state_url, autocommit=True) as db:
            db.execute("TRUNCATE state, outbox, cron_fires")
    system.start_workers(processes=1, threads=2)
    return system


def start_schedulers(system: System, names: list[str], env: dict[str, dict[str, str]] | None = None) -> None:
    for name in names:
        system.processes.start(name, "-m", "scheduler", env=(env or {}).get(name))
    for name in names:
        wait_for(lambda name=name: f"Scheduled {STEP}" in system.log(name), timeout=60, what=f"{name} to schedule")


def claimed(system: System) -> list[tuple[datetime, str]]:
    """Every claimed tick of the step, in order, with the scheduler that won it."""
    with system.state._reader() as db:  # noqa: SLF001 - a look at the claims table itself
        rows = db.execute(system.state._sql("SELECT tick, fired_by FROM cron_fires WHERE step = ?"), (STEP,))
        return sorted((datetime.fromisoformat(tick), by) for tick, by in rows.fetchall())


def stop_schedulers(system: System, names: list[str]) -> None:
    for name in names:
        if name in system.processes.running:
            system.stop(name, signal.SIGINT)  # lets a fire under way finish its publish


def check_once_per_tick(system: System, label: str) -> None:
    """Every second from the first claim to the last was claimed once, and its message ran exactly once."""
    ticks = claimed(system)
    expected = {cron_message_id(STEP, tick): tick for tick, _ in ticks}

    def runs() -> dict[str, int]:
        return {key: value["n"] for key, value in system.state.items("runs")}

    wait_for(lambda: set(expected) <= set(runs()), timeout=60, what="every claimed tick's run")
    time.sleep(1)  # a duplicate would land now
    seen = runs()
    gaps = [b for (a, _), (b, _) in zip(ticks, ticks[1:], strict=False) if b - a != timedelta(seconds=1)]
    winners: dict[str, int] = {}
    for _, by in ticks:
        winners[by] = winners.get(by, 0) + 1
    print(
        f"{label}: {len(ticks)} ticks claimed from {ticks[0][0]:%H:%M:%S} to {ticks[-1][0]:%H:%M:%S}, "
        f"{sum(seen.values())} runs, gaps {len(gaps)}, runs per tick {sorted(set(seen.values()))}, "
        f"won by {sorted(winners.values())}"
    )
    assert gaps == []
    assert seen == dict.fromkeys(expected, 1)  # no tick ran twice, none ran that was not claimed
    assert system.state.pending_messages() == []


@pytest.mark.parametrize("schedulers", [2, 3])
def test_schedulers_on_postgresql_fire_each_tick_once_through_a_kill(rabbitmq, postgres, tmp_path, schedulers):
    system = cron_system(tmp_path, rabbitmq, postgres.url)
    names = [f"scheduler-{n}" for n in range(schedulers)]
    try:
        start_schedulers(system, names)
        time.sleep(5)
        system.stop(names[0], signal.SIGKILL)
        time.sleep(5)
        stop_schedulers(system, names)
        check_once_per_tick(system, f"{schedulers} schedulers on PostgreSQL, one killed halfway")
    finally:
        system.stop_all()


def test_a_scheduler_frozen_inside_its_claim_holds_the_others_up_briefly(rabbitmq, postgres, tmp_path):
    system = cron_system(tmp_path, rabbitmq, postgres.url)
    names = ["frozen", "steady"]
    try:
        # The steady one first, firing already: the frozen one freezes in the first claim it makes.
        start_schedulers(system, ["steady"])
        wait_for(lambda: "Fired cron step" in system.log("steady"), timeout=60, what="the steady scheduler to fire")
        start_schedulers(system, ["frozen"], env={"frozen": {"CONVEYOR_FAULT_STOP_IN_CLAIM": "1"}})
        pid = system.processes.running["frozen"].pid
        wait_for(lambda: _state(pid) == "T", timeout=60, what="the scheduler to stop itself in its claim")
        stopped_at = datetime.now(UTC)
        time.sleep(5)
        os.kill(pid, signal.SIGCONT)
        time.sleep(3)
        stop_schedulers(system, names)
        during = [tick for tick, _ in claimed(system) if stopped_at - timedelta(seconds=2) <= tick <= stopped_at]
        print(f"ticks claimed around the freeze: {[f'{t:%H:%M:%S}' for t in during]}")
        assert "was paused" in system.log("frozen") or "claim failed" in system.log("frozen")
        check_once_per_tick(system, "2 schedulers on PostgreSQL, one frozen in its claim for 5 s")
    finally:
        system.stop_all()


def test_two_schedulers_on_one_sqlite_file_fire_each_tick_once(rabbitmq, tmp_path):
    system = cron_system(tmp_path, rabbitmq, None)
    names = ["scheduler-a", "scheduler-b"]
    try:
        start_schedulers(system, names)
        time.sleep(8)
        stop_schedulers(system, names)
        check_once_per_tick(system, "2 schedulers on SQLite")
    finally:
        system.stop_all()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return ""
