"""ListNotifications: GET /notifications/{userId} returns a user's in-app notifications, newest first."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import INBOX_GROUP, NotificationList


@step(
    name="ListNotifications",
    description="Lists a user's in-app notifications",
    flows=["event-bus"],
    triggers=[http("GET", "/notifications/:userId", responses={200: NotificationList})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    notifications = ctx.state.list(INBOX_GROUP.format(userId=request.path_params["userId"]))
    return {"status": 200, "body": notifications[::-1]}
