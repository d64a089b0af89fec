"""ProcessMessage: the background worker. Simulates work by priority, uppercases the text, marks it processed.

On any error it marks the message failed and re-raises, so Conveyor retries it
([steps.ProcessMessage] in config.toml: 3 retries, 5 s apart); a message that fails every
attempt is dead-lettered to ``message.failed``.
"""

from __future__ import annotations

import asyncio

from conveyor import AsyncContext, now_iso, queue, step

from .types import MESSAGES, WORK_MS, MessageProcessed, MessageSent, Priority, process_text


@step(
    name="ProcessMessage",
    description="Background worker for message processing",
    flows=["messages"],
    triggers=[queue("message.sent", input=MessageSent)],
    enqueues=["message.processed"],
    dead_letter_queue="message.failed",
)
async def handler(message: MessageSent, ctx: AsyncContext) -> None:
    ctx.logger.info("Processing message", messageId=message.messageId, priority=message.priority, attempt=ctx.attempt)
    try:
        processed_text = process_text(message.text)
        processing_time = await simulate_work(message.priority)

        # Enqueue before marking the message processed, so "processed" (and NotifyCompletion, which
        # watches for it) means the whole job is done, message.processed included.
        await ctx.enqueue(
            "message.processed", MessageProcessed(messageId=message.messageId, processedText=processed_text)
        )
        await ctx.state.update(
            MESSAGES,
            message.messageId,
            [
                {
                    "type": "merge",
                    "value": {
                        "status": "processed",
                        "processedAt": now_iso(),
                        "processedText": processed_text,
                        "processingTime": processing_time,
                    },
                },
                # A retry that succeeds clears what the failed attempt recorded.
                {"type": "remove", "path": "error"},
                {"type": "remove", "path": "failedAt"},
            ],
        )
        ctx.logger.info("Message processed successfully", messageId=message.messageId, processingTime=processing_time)
    except Exception as exc:
        ctx.logger.error("Message processing failed", messageId=message.messageId, error=str(exc), attempt=ctx.attempt)
        try:
            await ctx.state.update(
                MESSAGES,
                message.messageId,
                {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "failedAt": now_iso()},
            )
        except Exception:
            # The original error is the one worth retrying and dead-lettering; keep this one in the log.
            ctx.logger.exception("Could not record the failure", messageId=message.messageId)
        raise  # the queue's retry mechanism takes it from here


async def simulate_work(priority: Priority) -> int:
    """Stand in for real work (API calls, transformations): high 100 ms, normal 500 ms, low 1000 ms."""
    delay = WORK_MS[priority]
    await asyncio.sleep(delay / 1000)
    return delay
