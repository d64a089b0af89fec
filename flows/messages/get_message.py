"""GetMessage: GET /messages/{messageId} returns a message and where it is in its processing."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import MESSAGES, Error, Message


@step(
    name="GetMessage",
    description="Returns a message and its status",
    flows=["messages"],
    triggers=[http("GET", "/messages/:messageId", responses={200: Message, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    message = ctx.state.get(MESSAGES, request.path_params["messageId"])
    if message is None:
        return {"status": 404, "body": {"error": "Message not found"}}
    return {"status": 200, "body": message}
