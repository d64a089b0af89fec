"""RecordMessageResult: the next stage after processing; records what ``message.processed`` delivered."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import MESSAGE_RESULTS, MessageProcessed


@step(
    name="RecordMessageResult",
    description="Receives processed messages (the pipeline's next stage)",
    flows=["messages"],
    triggers=[queue("message.processed", input=MessageProcessed)],
)
def handler(result: MessageProcessed, ctx: Context) -> None:
    # Keyed by message id: a message processed twice (a retry after a late failure) is recorded once.
    ctx.state.set(MESSAGE_RESULTS, result.messageId, {**result.model_dump(), "receivedAt": now_iso()})
    ctx.logger.info("Processed message received", messageId=result.messageId)
