"""SendEmail: the email queue's worker. Sends (here: records as sent) one email."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import EMAIL_COUNTER, EMAILS, EmailJob


@step(
    name="SendEmail",
    description="Sends queued emails (recorded in state as sent)",
    flows=["job-queues"],
    triggers=[queue("email.send", input=EmailJob)],
)
def handler(email: EmailJob, ctx: Context) -> None:
    # Numbered in sending order, so the effect of priorities can be read off the records.
    sequence = ctx.state.update(EMAIL_COUNTER, "sent", [{"type": "increment", "path": "count"}])["count"]
    email_id = f"email-{ctx.message_id}"
    # Keyed by message id: a redelivered message overwrites its own record instead of adding one.
    ctx.state.set(
        EMAILS,
        email_id,
        {"id": email_id, **email.model_dump(mode="json"), "status": "sent", "sentAt": now_iso(), "sequence": sequence},
    )
    # A real system calls its mail service (SMTP, SES, Postmark...) here.
    ctx.logger.info("Email sent", emailId=email_id, template=email.template, priority=email.priority)
