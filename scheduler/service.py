"""The scheduler: one APScheduler job per cron step, each firing a message to the step's actor."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from conveyor import Runtime
from conveyor.cron import parse_cron

logger = logging.getLogger("conveyor.scheduler")

#: Seconds between sweeps of state triggers left unpublished by a crash.
SWEEP_INTERVAL = 10


def schedule_cron_steps(runtime: Runtime, scheduler: BaseScheduler | None = None) -> BaseScheduler:
    """Add a job per cron step to ``scheduler`` (a new blocking one by default).

    A firing only sends a message: the work runs on the workers, with the step's retries.
    Firings missed by up to a minute (a busy or paused scheduler) run once, late; firings due
    while the scheduler process was down are not made up.
    """
    timezone = runtime.config.scheduler.timezone
    scheduler = scheduler or BlockingScheduler(timezone=timezone)
    for step, expression in runtime.cron_steps():
        trigger = parse_cron(expression, timezone=timezone, step=step.name)
        scheduler.add_job(
            _fire,
            trigger,
            args=(runtime, step.name, expression),
            id=step.name,
            name=f"{step.name} ({expression})",
            coalesce=True,
            misfire_grace_time=60,
            max_instances=1,
            replace_existing=True,
        )
        logger.info("Scheduled %s on %r (%s)", step.name, expression, timezone)
    if runtime.registry.state_watchers():
        # State triggers are published right after their write; this catches those a crash left behind.
        scheduler.add_job(
            runtime.sweep_state_triggers,
            "interval",
            seconds=SWEEP_INTERVAL,
            id="conveyor.sweep-state-triggers",
            name="sweep unpublished state triggers",
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
    return scheduler


def _fire(runtime: Runtime, step_name: str, expression: str) -> None:
    message_id = runtime.send(step_name, None)
    logger.info("Fired cron step %s (%s) as message %s", step_name, expression, message_id)
