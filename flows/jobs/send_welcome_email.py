"""SendWelcomeEmail: on ``user.created``, puts a welcome email on the email queue."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import EmailJob, UserCreated


@step(
    name="SendWelcomeEmail",
    description="User created -> send welcome email",
    flows=["event-bus"],
    triggers=[queue("user.created", input=UserCreated)],
    enqueues=["email.send"],
)
def handler(event: UserCreated, ctx: Context) -> None:
    ctx.enqueue(
        "email.send",
        EmailJob(to=event.data.email, subject="Welcome!", template="welcome", data={"name": event.data.name}),
    )
    ctx.logger.info("Welcome email queued", eventId=event.id)
