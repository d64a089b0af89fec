"""HandleFailedMessage: records messages that failed every attempt (the ``message.failed`` dead-letter topic)."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import FAILED_MESSAGES, FailedMessage


@step(
    name="HandleFailedMessage",
    description="Keeps messages that failed for good for a person to look at",
    flows=["messages"],
    triggers=[queue("message.failed", input=FailedMessage)],
)
def handler(failed: FailedMessage, ctx: Context) -> None:
    ctx.logger.error("Message failed for good", messageId=failed.messageId, error=failed.error)
    record = failed.model_dump(mode="json", exclude={"deadLetter"})
    record["attempts"] = failed.deadLetter.attempts if failed.deadLetter else None
    ctx.state.set(FAILED_MESSAGES, failed.messageId, record)
