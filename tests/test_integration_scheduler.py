"""Cron steps fire through the real scheduler process and run on the workers."""

from __future__ import annotations

from devtools.processes import wait_for
from tests.system import System


def test_scheduler_fires_cron_step_on_the_workers(rabbitmq, tmp_path):
    system = System(tmp_path, rabbitmq.url, extra_config='[steps.TestTick]\ncron = "* * * * * *"\n')
    try:
        system.start_workers(processes=1, threads=2)
        system.start("scheduler", "-m", "scheduler")
        wait_for(lambda: (system.state.get("ticks", "count") or {}).get("n", 0) >= 2, timeout=30)
        assert "Scheduled TestTick on '* * * * * *' (UTC)" in system.log("scheduler")
    finally:
        system.stop_all()


def test_scheduler_refuses_an_invalid_expression(rabbitmq, tmp_path):
    system = System(tmp_path, rabbitmq.url, extra_config='[steps.TestTick]\ncron = "61 * * * *"\n')
    try:
        process = system.start("scheduler", "-m", "scheduler")
        assert process.wait(30) != 0
        log = system.log("scheduler")
        assert "step 'TestTick': invalid cron expression '61 * * * *'" in log
        assert "Traceback" not in log
    finally:
        system.stop_all()
