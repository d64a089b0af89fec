"""Steps for tests/test_tracing.py; each does little but cause the next hop."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel

from conveyor import AsyncContext, Context, Request, StateChange, cron, http, queue, state, step


class Job(BaseModel):
    id: str
    fail: bool = False
    keep: bool = True
    hold: bool = False  # RunJob waits for RELEASE


#: Set by a test to let a held RunJob finish.
RELEASE = threading.Event()


@step(
    name="StartJob",
    flows=["traced"],
    triggers=[http("POST", "/jobs", body=Job)],
    enqueues=["job.started"],
)
def start_job(request: Request, ctx: Context) -> dict[str, Any]:
    ctx.logger.info("Job accepted", jobId=request.body.id)
    ctx.enqueue("job.started", request.body)
    return {"status": 202, "body": {"traceId": ctx.trace_id}}


@step(name="RunJob", flows=["traced"], triggers=[queue("job.started", input=Job)])
def run_job(job: Job, ctx: Context) -> None:
    ctx.logger.info("Running job", jobId=job.id)
    if job.hold:
        RELEASE.wait(30)
    if job.fail:
        raise RuntimeError(f"job {job.id} broke")
    ctx.state.set("jobs", job.id, {"status": "done"})


@step(
    name="AuditJob",
    flows=["traced"],
    triggers=[queue("job.started", input=Job, condition=lambda job, ctx: job.keep)],
)
def audit_job(job: Job, ctx: Context) -> None:
    ctx.logger.info("Audited", jobId=job.id)


@step(name="JobDone", flows=["traced"], triggers=[state("jobs", filter={"status": "done"})])
def job_done(change: StateChange, ctx: Context) -> None:
    ctx.logger.info("Saw a finished job", key=change.key)


@step(name="JobFailed", flows=["traced"], triggers=[queue("job.dead")])
def job_failed(record: Any, ctx: Context) -> None:
    ctx.logger.warning("A job failed for good")


@step(name="Nightly", flows=["traced"], triggers=[cron("0 3 * * *")], enqueues=["job.started"])
def nightly(data: Any, ctx: Context) -> None:
    ctx.enqueue("job.started", {"id": "nightly"})


@step(
    name="StartAsyncJob",
    flows=["traced-async"],
    triggers=[http("POST", "/async-jobs", body=Job)],
    enqueues=["job.later"],
)
async def start_async_job(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    await ctx.enqueue("job.later", request.body)
    return {"status": 202, "body": {"traceId": ctx.trace_id}}


@step(name="LaterJob", flows=["traced-async"], triggers=[queue("job.later", input=Job)], enqueues=["job.last"])
async def later_job(job: Job, ctx: AsyncContext) -> None:
    ctx.logger.info("Later", jobId=job.id)
    await ctx.state.set("later", job.id, {"status": "done"})
    await ctx.enqueue("job.last", job)


@step(name="LastJob", flows=["traced-async"], triggers=[queue("job.last", input=Job)])
def last_job(job: Job, ctx: Context) -> None:
    ctx.logger.info("Last", jobId=job.id)


@step(name="LaterSaved", flows=["traced-async"], triggers=[state("later", filter={"status": "done"})])
def later_saved(change: StateChange, ctx: Context) -> None:
    ctx.logger.info("Saw a later job", key=change.key)


@step(name="Heartbeat", flows=["traced"], triggers=[http("GET", "/healthz")])
def heartbeat(request: Request, ctx: Context) -> dict[str, Any]:
    # A step whose path starts like the gateway's own /health: a step's request, traced as any other.
    return {"status": 200, "body": {"alive": True}}
