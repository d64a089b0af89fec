"""Scheduling: one APScheduler job per cron step, each sending a message to its step (``python -m scheduler``)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from .declare.cron_expressions import parse_cron
from .runtime import Runtime

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
            fire_cron_step,
            trigger,
            args=(runtime, step.name),
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
            runtime.outbox.sweep,
            "interval",
            seconds=SWEEP_INTERVAL,
            id="conveyor.sweep-state-triggers",
            name="sweep unpublished state triggers",
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
    return scheduler


def fire_cron_step(runtime: Runtime, step_name: str) -> str:
    """Send cron step ``step_name`` its message now, as a firing does; returns the message id."""
    message_id = runtime.publisher.send(step_name, None)
    logger.info("Fired cron step %s as message %s", step_name, message_id)
    return message_id
