"""ListEvents: GET /events/{type} returns the most recent events of a type, newest first (?limit=, default 100)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from conveyor import Context, Request, http, step

from .types import EVENT_HISTORY, EVENT_TYPES, EVENTS_GROUP, EventError, EventList


class EventQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=EVENT_HISTORY)


@step(
    name="ListEvents",
    description="Returns recent events of one type, for replay or inspection",
    flows=["event-bus"],
    triggers=[http("GET", "/events/:type", query=EventQuery, responses={200: EventList, 404: EventError})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    event_type = request.path_params["type"]
    if event_type not in EVENT_TYPES:
        return {"status": 404, "body": {"error": f"Unknown event type {event_type!r}", "eventTypes": EVENT_TYPES}}
    query: EventQuery = request.query
    events = ctx.state.list(EVENTS_GROUP.format(type=event_type))
    return {"status": 200, "body": events[::-1][: query.limit]}
