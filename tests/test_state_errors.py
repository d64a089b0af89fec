"""A name the state store cannot hold, taken from a request: the client's 400, the same on every backend."""

from __future__ import annotations

from pydantic import BaseModel

from conveyor import AsyncContext, Registry, Request, http, step
from conveyor.testing import StepEnvironment


def test_a_key_the_store_cannot_hold_is_a_400_naming_it_never_a_500():
    class Tag(BaseModel):
        name: str

    @step(name="SaveTag", triggers=[http("POST", "/tags", body=Tag)], registry=Registry())
    async def save(request: Request, ctx: AsyncContext) -> dict:
        await ctx.state.set("tags", request.body.name, {"saved": True})  # a key taken from the request
        return {"status": 201, "body": {"name": request.body.name}}

    with StepEnvironment() as env:
        answer = env.request(save, json={"name": "a\u0000b"})
        assert answer.status == 400
        assert "state 'tags' key 'a\\x00b'" in answer.body["error"] and "NUL" in answer.body["error"]
        assert env.request(save, json={"name": "ok"}).status == 201
