"""QueueEmail: POST /emails puts an email on the email queue at the priority asked for (the priority queue)."""

from __future__ import annotations

from typing import Any

from conveyor import AsyncContext, Request, http, step

from .types import EmailJob, Error, JobQueued, QueueEmailBody


@step(
    name="QueueEmail",
    description="Enqueues an email; high-priority emails overtake a backlog of low ones",
    flows=["job-queues"],
    triggers=[http("POST", "/emails", body=QueueEmailBody, responses={202: JobQueued, 400: Error})],
    enqueues=["email.send"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: QueueEmailBody = request.body
    # The priority becomes the message's RabbitMQ priority: waiting high messages are delivered first.
    [job_id] = await ctx.enqueue("email.send", EmailJob(**body.model_dump()), priority=body.priority)
    ctx.logger.info("Email queued", jobId=job_id, template=body.template, priority=body.priority)
    return {"status": 202, "body": {"jobId": job_id, "status": "queued"}}
