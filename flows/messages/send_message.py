"""SendMessage: POST /messages stores a message as pending and enqueues it at its own priority."""

from __future__ import annotations

import secrets
import time
from typing import Any

from conveyor import AsyncContext, PublishError, Request, http, now_iso, step

from .types import MESSAGES, Error, MessageAccepted, MessageSent, SendMessageBody


@step(
    name="SendMessage",
    description="Receives messages and enqueues for background processing",
    flows=["messages"],
    triggers=[http("POST", "/messages", body=SendMessageBody, responses={200: MessageAccepted, 400: Error})],
    enqueues=["message.sent"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: SendMessageBody = request.body
    message_id = f"msg-{int(time.time() * 1000)}-{secrets.token_hex(3)}"
    ctx.logger.info("Received message", messageId=message_id, priority=body.priority)

    # messageId is kept inside the value too: CleanupMessages and readers of the group find it there.
    await ctx.state.set(
        MESSAGES,
        message_id,
        {
            "messageId": message_id,
            "text": body.text,
            "priority": body.priority,
            "metadata": body.metadata,
            "status": "pending",
            "createdAt": now_iso(),
        },
    )
    try:
        # The message's priority is also its RabbitMQ priority: under a backlog, high goes first.
        await ctx.enqueue(
            "message.sent",
            MessageSent(messageId=message_id, text=body.text, priority=body.priority),
            priority=body.priority,
        )
    except PublishError:
        # The client gets a 503 and sends again: leave no pending message that nothing will process.
        await ctx.state.delete(MESSAGES, message_id)
        raise
    return {"status": 200, "body": {"messageId": message_id, "status": "enqueued"}}
