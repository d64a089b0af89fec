"""ListEmails: GET /emails lists the emails sent, in the order they went out (optionally ?to=<address>)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from conveyor import Context, Request, http, step

from .types import EMAILS


class EmailQuery(BaseModel):
    to: str | None = None


@step(
    name="ListEmails",
    description="Lists sent emails in sending order",
    flows=["job-queues"],
    triggers=[http("GET", "/emails", query=EmailQuery)],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    query: EmailQuery = request.query
    emails = [email for email in ctx.state.list(EMAILS) if query.to is None or email.get("to") == query.to]
    emails.sort(key=lambda email: email.get("sequence", 0))
    return {"status": 200, "body": emails}
