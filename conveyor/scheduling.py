"""Scheduling: one APScheduler job per cron step, each sending a message to its step (``python -m scheduler``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from .declare.cron_expressions import parse_cron
from .runtime import Runtime

logger = logging.getLogger("conveyor.scheduler")

#: Seconds between sweeps of state triggers left unpublished by a crash.
SWEEP_INTERVAL = 10
#: Seconds between removals of state keys whose time to live has passed (they read as missing already).
EXPIRY_INTERVAL = 60


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
        _every(
            scheduler, SWEEP_INTERVAL, runtime.outbox.sweep, "sweep-state-triggers", "sweep unpublished state triggers"
        )
    _every(
        scheduler,
        EXPIRY_INTERVAL,
        lambda: remove_expired_keys(runtime),
        "remove-expired-keys",
        "remove expired state keys",
    )
    return scheduler


def _every(scheduler: BaseScheduler, seconds: int, job: Callable[[], object], job_id: str, name: str) -> None:
    """Run Conveyor's own upkeep ``job`` every ``seconds``, one run at a time, missed runs coalesced."""
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        id=f"conveyor.{job_id}",
        name=name,
        coalesce=True,
        max_instances=1,
        replace_existing=True,
    )


def remove_expired_keys(runtime: Runtime) -> int:
    """Delete the state keys whose time to live has passed, a batch at a time; returns how many."""
    removed = 0
    while (batch := runtime.state.remove_expired(limit=1000)) > 0:
        removed += batch
        if batch < 1000:
            break
    if removed:
        logger.info("Removed %d expired state key(s).", removed)
    return removed


def fire_cron_step(runtime: Runtime, step_name: str) -> str:
    """Send cron step ``step_name`` its message now, as a firing does; returns the message id."""
    message_id = runtime.publisher.send(step_name, None)
    logger.info("Fired cron step %s as message %s", step_name, message_id)
    return message_id
