"""NotifyCompletion: when a message becomes processed, sends (here: records) a completion notification.

A state trigger: it runs on every write to the ``messages`` group whose value has
``status == "processed"``, delivered through RabbitMQ like any message. Its condition keeps
only the writes that make a message processed, so a deletion by CleanupMessages or a later
write to an already processed message does not notify again.
"""

from __future__ import annotations

from conveyor import Context, StateChange, now_iso, state, step

from .types import MESSAGE_NOTIFICATIONS, MESSAGES


def became_processed(change: StateChange, ctx: Context) -> bool:
    """Created or updated into ``processed`` (not deleted, not already processed before)."""
    if change.event == "deleted":
        return False
    old = change.old_value if isinstance(change.old_value, dict) else {}
    return old.get("status") != "processed"


@step(
    name="NotifyCompletion",
    description="Send notification when message is processed",
    flows=["messages"],
    triggers=[state(MESSAGES, filter={"status": "processed"}, condition=became_processed)],
)
def handler(change: StateChange, ctx: Context) -> None:
    ctx.logger.info("Message completed", messageId=change.key)
    notification = {
        "type": "message_completed",
        "messageId": change.key,
        "completedAt": change.value.get("processedAt"),
        "notifiedAt": now_iso(),
    }
    # A real system sends an email or calls a webhook here; keyed by message id, so it is sent once.
    ctx.state.set(MESSAGE_NOTIFICATIONS, change.key, notification)
    ctx.logger.info("Notification sent", messageId=change.key)
