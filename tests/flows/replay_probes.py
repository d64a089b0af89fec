"""A probe for the dead-letter queue tests: it fails until the test says the fault is fixed."""

from __future__ import annotations

from dramatiq.middleware import CurrentMessage
from pydantic import BaseModel

from conveyor import Context, queue, step

#: State group where a test marks a probe id as fixed: ``state.set(FIXED, id, True)``.
FIXED = "replay-fixed"
#: State group where a run that succeeded is recorded, by probe id.
DONE = "replay-done"


class ReplayProbe(BaseModel):
    id: str


@step(name="FailsUntilFixed", triggers=[queue("test.fails-until-fixed", input=ReplayProbe)])
def fails_until_fixed(probe: ReplayProbe, ctx: Context) -> None:
    if not ctx.state.get(FIXED, probe.id):
        raise RuntimeError(f"not fixed yet: {probe.id}")
    message = CurrentMessage.get_current_message()
    options = message.options if message is not None else {}
    ctx.state.set(
        DONE,
        probe.id,
        {
            "attempt": ctx.attempt,
            "traceId": ctx.trace_id,
            "messageId": ctx.message_id,
            "topic": ctx.topic,
            "replayedFromMessage": options.get("replayed_from_message"),
        },
    )
