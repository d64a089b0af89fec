"""Cron fires, once per tick however many schedulers run: every scheduler fires every tick, the first
to claim ``(step, scheduled time)`` in the shared state store publishes.

The claim and the cron message commit in one transaction (the message staged in the outbox),
so a scheduler that dies after its commit leaves the message to another's sweep, and one that
dies before leaves the tick to the others. The tick is the time APScheduler *scheduled*, which
:class:`TickExecutor` hands to the job; it is never read from the clock, so schedulers whose
timers fire a little apart still claim the same tick. The message id derives from the step
and the tick: a message published twice (a sweep racing a slow publisher) is recognisable,
and ``ctx.message_id`` is the same for every scheduler's fire of one tick.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import time
import traceback
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import BaseExecutor

from .. import faults
from ..errors import StateConflictError, StateUnavailableError
from ..store.cron_fires import tick_key

if TYPE_CHECKING:
    from ..runtime import Runtime

logger = logging.getLogger("conveyor.scheduler")

#: The namespace of cron message ids: ``uuid5(CRON_NAMESPACE, "<step>|<tick in UTC, ISO 8601>")``.
CRON_NAMESPACE = uuid.UUID("7d3f6a52-2f0e-5b8e-9a41-c0b1e6f0c9a1")
#: A fire later than this (seconds) after its tick is not made: it is reported as missed.
MISFIRE_GRACE = 60
#: How long a claim waits for another scheduler's claim of the same tick before trying again (PostgreSQL).
CLAIM_LOCK_TIMEOUT = 3.0
#: A scheduler frozen this long inside its claim loses it: the server ends its session (PostgreSQL).
CLAIM_IDLE_TIMEOUT = 2.0
#: Tries of one claim that failed on a lock timeout or an unreachable store.
CLAIM_ATTEMPTS = 5
#: Fires of one step that may be under way at once: one waiting on a frozen scheduler's claim
#: must not hold up the next tick's.
FIRES_AT_ONCE = 10
#: The APScheduler executor alias cron jobs run on.
EXECUTOR = "conveyor-cron"


def cron_message_id(step: str, tick: datetime) -> str:
    """The message id of ``step``'s fire at ``tick``: the same in every scheduler."""
    return str(uuid.uuid5(CRON_NAMESPACE, f"{step}|{tick_key(tick)}"))


def scheduler_name() -> str:
    """This scheduler, as its claims record it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class CronFirer:
    """Fires ticks of the runtime's cron steps, each once across every scheduler sharing its state store.

    Parameters:
      runtime: the scheduler's runtime (its state store holds the claims, its outbox publishes).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def fire(self, step_name: str, tick: datetime | None = None, *, by_hand: bool = False) -> str | None:
        """Claim ``tick`` of ``step_name`` and, if this scheduler won, publish its message.

        :class:`TickExecutor` passes the scheduled time; without one (a fire by hand) the
        tick is this moment. Returns the message id if this call fired it, ``None`` if
        another scheduler had.
        A claim that waited too long on another's, or found the store unreachable, is tried
        again; the last failure is raised.
        """
        by_hand = by_hand or tick is None
        tick = tick or datetime.now(UTC)
        store = self.runtime.state
        message = self.runtime.publisher.message(step_name, None)
        message = message.copy(message_id=cron_message_id(step_name, tick))
        tracer = self.runtime.tracer
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            try:
                with (
                    tracer.cron_fire(step_name, message.options["trace_id"], tick.timestamp(), by_hand=by_hand) as span,
                    store.transaction(lock_timeout=CLAIM_LOCK_TIMEOUT, idle_timeout=CLAIM_IDLE_TIMEOUT),
                ):
                    if not store.claim_cron_fire(step_name, tick, fired_by=scheduler_name()):
                        logger.debug("Cron step %s at %s: another scheduler fired it", step_name, tick_key(tick))
                        span.status = "lost"
                        return None
                    tracer.staged(message)
                    store.stage_message(message.encode())
                    faults.stop_in_claim()
            except (StateConflictError, StateUnavailableError) as exc:
                if attempt == CLAIM_ATTEMPTS:
                    raise
                logger.warning("Cron step %s at %s: claim failed (%s); trying again", step_name, tick_key(tick), exc)
                time.sleep(0.1 * attempt)
                continue
            # Committed: the outbox has published the message (or left it to a sweep).
            logger.info("Fired cron step %s for %s as message %s", step_name, tick_key(tick), message.message_id)
            return message.message_id
        raise AssertionError("unreachable")

    def on_missed(self, event: JobExecutionEvent) -> None:
        """APScheduler's ``EVENT_JOB_MISSED``: say whether another scheduler fired the tick, or nobody did."""
        step, tick = event.job_id, event.scheduled_run_time
        try:
            fired_by = self.runtime.state.cron_fired_by(step, tick)
        except StateUnavailableError:
            fired_by = None
        if fired_by is not None:
            logger.info("Cron step %s at %s was fired by %s while this scheduler was behind", step, tick, fired_by)
            return
        logger.warning(
            "Cron step %s missed its tick at %s: no scheduler fired it within %ds, and it is not fired late "
            "(run more than one scheduler, or fire it by hand with fire_cron_step)",
            step,
            tick_key(tick),
            MISFIRE_GRACE,
        )


class TickExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler 3 is untyped
    """Runs each job as ``job.func(*job.args, tick=...)``, ``tick`` the time APScheduler scheduled it for.

    APScheduler's own executors call ``job.func()`` and keep the scheduled time to themselves;
    this one hands it over (with ``coalesce``, the latest of the times that came due). A run
    later than the job's ``misfire_grace_time`` is not made: it becomes ``EVENT_JOB_MISSED``.

    Parameters:
      threads: how many runs may be under way at once, over every job.
    """

    def __init__(self, threads: int = FIRES_AT_ONCE) -> None:
        super().__init__()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="conveyor-cron")

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self._pool.submit(self._run, job, run_times)

    def _run(self, job: Any, run_times: list[datetime]) -> None:
        events: list[JobExecutionEvent] = []
        try:
            for tick in run_times:
                events.append(self._run_once(job, tick))
        finally:
            self._run_job_success(job.id, events)  # frees the job's instance, dispatches the events

    def _run_once(self, job: Any, tick: datetime) -> JobExecutionEvent:
        late = datetime.now(UTC) - tick
        if job.misfire_grace_time is not None and late > timedelta(seconds=job.misfire_grace_time):
            return JobExecutionEvent(EVENT_JOB_MISSED, job.id, job._jobstore_alias, tick)
        try:
            result = job.func(*job.args, **job.kwargs, tick=tick)
        except Exception as exc:
            self._logger.exception("Cron job %s at %s failed", job.id, tick)
            trace = "".join(traceback.format_tb(exc.__traceback__))
            return JobExecutionEvent(EVENT_JOB_ERROR, job.id, job._jobstore_alias, tick, exception=exc, traceback=trace)
        return JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, job._jobstore_alias, tick, retval=result)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait)
