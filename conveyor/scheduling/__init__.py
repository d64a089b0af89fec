"""Scheduling: one APScheduler job per cron step, each fire claimed once across every scheduler
(``python -m scheduler``; :mod:`.cron`), and Conveyor's upkeep jobs (:mod:`.upkeep`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from ..declare.cron_expressions import parse_cron
from ..runtime import Runtime
from .cron import EXECUTOR, FIRES_AT_ONCE, MISFIRE_GRACE, CronFirer, TickExecutor, cron_message_id
from .upkeep import add_upkeep_jobs, remove_expired_keys, report_missed_ticks

__all__ = ["CronFirer", "TickExecutor", "fire_cron_step", "remove_expired_keys", "schedule_cron_steps"]

logger = logging.getLogger("conveyor.scheduler")


def schedule_cron_steps(runtime: Runtime, scheduler: BaseScheduler | None = None) -> BaseScheduler:
    """Add a job per cron step to ``scheduler`` (a new blocking one by default), and the upkeep jobs.

    A fire only sends a message: the work runs on the workers, with the step's retries. Any
    number of schedulers may run against one state store: each tick fires once. A fire
    late by up to a minute (a busy or paused scheduler) is made, once; a tick that no
    scheduler fired within a minute, or that came while none ran, is logged as missed.
    """
    timezone = runtime.config.scheduler.timezone
    scheduler = scheduler or BlockingScheduler(timezone=timezone)
    firer = CronFirer(runtime)
    scheduler.add_executor(TickExecutor(), EXECUTOR)
    scheduler.add_listener(firer.on_missed, EVENT_JOB_MISSED)
    for step, expression in runtime.cron_steps():
        trigger = parse_cron(expression, timezone=timezone, step=step.name)
        scheduler.add_job(
            firer.fire,
            trigger,
            args=(step.name,),  # the executor adds the tick
            id=step.name,
            name=f"{step.name} ({expression})",
            executor=EXECUTOR,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE,
            max_instances=FIRES_AT_ONCE,
            replace_existing=True,
        )
        logger.info("Scheduled %s on %r (%s)", step.name, expression, timezone)
        report_missed_ticks(runtime, step.name, trigger)
    add_upkeep_jobs(scheduler, runtime)
    return scheduler


def fire_cron_step(runtime: Runtime, step_name: str) -> str:
    """Fire cron step ``step_name`` now, by hand, as its schedule does; returns the message id.

    The fire is claimed as a tick at this moment, so it is sent once, through the outbox.
    """
    tick = datetime.now(UTC)
    return CronFirer(runtime).fire(step_name, tick, by_hand=True) or cron_message_id(step_name, tick)
