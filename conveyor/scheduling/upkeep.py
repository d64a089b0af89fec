"""Conveyor's own jobs in every scheduler: the outbox sweep, expired keys, old cron claims, and a
report of the ticks nobody fired while every scheduler was down."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.base import BaseScheduler

from ..errors import BrokerUnavailableError, StateUnavailableError
from ..messaging.delays import DelayQueueJanitor
from ..ops.management import ManagementAPI
from ..store.cron_fires import tick_key
from ..tracing.retention import PRUNE_INTERVAL as TRACE_PRUNE_INTERVAL
from ..tracing.retention import prune_traces

if TYPE_CHECKING:
    from ..runtime import Runtime

logger = logging.getLogger("conveyor.scheduler")

#: Seconds between sweeps of outbox rows (state triggers, staged messages) a crash left unpublished.
SWEEP_INTERVAL = 10
#: Seconds between removals of state keys whose time to live has passed (they read as missing already).
EXPIRY_INTERVAL = 60
#: How long the claims of cron ticks are kept (seconds), and how often the old ones are removed.
CRON_FIRES_KEPT = 7 * 24 * 3600
PRUNE_INTERVAL = 3600
#: A tick due this long before a scheduler starts, that nobody claimed, counts as missed: a
#: scheduler that is alive claims a tick within a few seconds of it.
MISSED_AFTER = timedelta(seconds=10)
#: Missed ticks counted at most, per step, for the report.
MISSED_COUNTED = 10_000
#: Seconds between looks for idle delay queues to delete (quorum queues only: classic ones expire).
JANITOR_INTERVAL = 300


def add_upkeep_jobs(scheduler: BaseScheduler, runtime: Runtime) -> None:
    """Add the sweep, the expiry and the pruning jobs (every scheduler runs them: each is safe to run at once)."""
    # Writes record triggers, cron fires and idempotent requests stage messages: all wait for this if their
    # writer died before publishing, whether or not any step watches state.
    _every(scheduler, SWEEP_INTERVAL, runtime.outbox.sweep, "sweep-outbox", "sweep unpublished outbox rows")
    _every(
        scheduler,
        EXPIRY_INTERVAL,
        lambda: remove_expired_keys(runtime),
        "remove-expired-keys",
        "remove expired state keys",
    )
    _every(
        scheduler,
        PRUNE_INTERVAL,
        functools.partial(runtime.state.prune_cron_fires, CRON_FIRES_KEPT),
        "prune-cron-fires",
        "forget old cron claims",
    )
    if runtime.config.tracing.enabled:
        _every(
            scheduler,
            TRACE_PRUNE_INTERVAL,
            lambda: prune_traces(runtime.traces(), runtime.config.tracing),
            "prune-traces",
            "forget old traces",
        )
    broker = runtime.config.broker
    if broker.kind == "rabbitmq" and broker.queue_type == "quorum":
        janitor = DelayQueueJanitor(runtime.broker)  # type: ignore[arg-type]  # RabbitMQ, checked above
        _every(
            scheduler,
            JANITOR_INTERVAL,
            lambda: remove_idle_delay_queues(runtime, janitor),
            "remove-idle-delay-queues",
            "delete idle delay queues",
        )


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


def remove_idle_delay_queues(runtime: Runtime, janitor: DelayQueueJanitor) -> int:
    """Let ``janitor`` delete the quorum delay queues that stayed empty and unused; returns how many."""
    broker = runtime.config.broker
    try:
        queues = ManagementAPI(broker.management_urls, broker.urls).queues()
    except BrokerUnavailableError as exc:
        logger.warning("Cannot look for idle delay queues: %s", exc)
        return 0
    removed = janitor.remove_idle([actor.queue_name for actor in runtime.actors.values()], queues)
    if removed:
        logger.info("Deleted %d idle delay queue(s).", removed)
    return removed


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


def report_missed_ticks(runtime: Runtime, step: str, trigger: Any, now: datetime | None = None) -> int:
    """Log a WARNING for the ticks of ``step`` after its last claimed one that nobody fired; returns how many.

    A scheduler that starts after every one was down does not fire those ticks late: it says
    so once. A step never fired before (a new deployment) reports nothing.
    """
    now = now or datetime.now(UTC)
    try:
        last = runtime.state.last_cron_tick(step)
    except StateUnavailableError as exc:
        logger.warning("Cannot tell whether cron step %s missed ticks: %s", step, exc)
        return 0
    if last is None:
        return 0
    missed, first, latest = 0, None, None
    tick = trigger.get_next_fire_time(last, now)
    while tick is not None and tick <= now - MISSED_AFTER and missed < MISSED_COUNTED:
        missed, first, latest = missed + 1, first or tick, tick
        tick = trigger.get_next_fire_time(tick, now)
    if missed and first is not None and latest is not None:
        logger.warning(
            "Cron step %s missed %s%d tick(s) from %s to %s: no scheduler was running to fire them, and "
            "they are not fired late",
            step,
            "at least " if missed == MISSED_COUNTED else "",
            missed,
            tick_key(first),
            tick_key(latest),
        )
    return missed
