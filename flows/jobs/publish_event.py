"""PublishEvent: POST /events/{type} publishes an event on the bus.

The event is kept for replay (the last 1000 of each type) and enqueued to the topic named
after its type, where every subscribing step gets its own copy: ``user.created`` (a welcome
email), ``order.placed`` (a confirmation email and an admin notification) and
``product.inventory.low`` (a warning notification). The other types of the seed's bus are
kept but have no handler yet.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from pydantic import ValidationError

from conveyor import AsyncContext, PublishError, Request, http, step

from .types import (
    EVENT_DATA,
    EVENT_HISTORY,
    EVENT_TYPES,
    EVENTS_GROUP,
    HANDLED_EVENT_TYPES,
    Event,
    EventError,
    EventPublished,
    PublishEventBody,
)


@step(
    name="PublishEvent",
    description="Publishes an event to its subscribers and keeps it for replay",
    flows=["event-bus"],
    triggers=[
        http(
            "POST",
            "/events/:type",
            body=PublishEventBody,
            responses={202: EventPublished, 400: EventError, 404: EventError},
        )
    ],
    enqueues=list(HANDLED_EVENT_TYPES),
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    event_type = request.path_params["type"]
    if event_type not in EVENT_TYPES:
        return {"status": 404, "body": {"error": f"Unknown event type {event_type!r}", "eventTypes": EVENT_TYPES}}
    body: PublishEventBody = request.body
    data = body.data
    if event_type in EVENT_DATA:
        try:
            data = EVENT_DATA[event_type].model_validate(data).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            fields = [
                {"field": ".".join(["data", *(str(part) for part in error["loc"])]), "reason": error["msg"]}
                for error in exc.errors()
            ]
            return {"status": 400, "body": {"error": f"Invalid {event_type} event data", "fields": fields}}

    now = int(time.time() * 1000)
    event = Event(id=f"evt-{now}-{secrets.token_hex(4)}", type=event_type, data=data, timestamp=now, source=body.source)
    group = EVENTS_GROUP.format(type=event_type)
    await _keep_for_replay(ctx, group, event)

    handlers = 0
    if event_type in HANDLED_EVENT_TYPES:
        try:
            handlers = len(await ctx.enqueue(event_type, event))
        except PublishError:
            await ctx.state.delete(group, event.id)  # not published: the client gets a 503 and sends again
            raise
    ctx.logger.info("Event published", eventId=event.id, type=event_type, source=body.source, handlers=handlers)
    return {"status": 202, "body": EventPublished(eventId=event.id, type=event_type, handlers=handlers)}


async def _keep_for_replay(ctx: AsyncContext, group: str, event: Event) -> None:
    await ctx.state.set(group, event.id, event.model_dump(mode="json"))
    stored = await ctx.state.items(group)
    for key, _ in stored[: max(0, len(stored) - EVENT_HISTORY)]:
        await ctx.state.delete(group, key)
