"""Log lines name messages without their payloads: a customer's data never reaches the logs by default."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from conveyor import Context, Registry, queue, step
from conveyor.logs import DRAMATIQ_WORKER_LOGGER, WithoutPayloads, setup_logging
from tests.helpers import drain, memory_runtime, running_worker

EMAIL = "alice.secret@example.com"


class Signup(BaseModel):
    email: str
    vip: bool


def test_failed_and_skipped_messages_are_logged_without_their_payload(tmp_path, caplog):
    root = logging.getLogger()
    level = root.level
    setup_logging("INFO")  # what every Conveyor process runs at boot
    root.setLevel(level)
    assert any(isinstance(f, WithoutPayloads) for f in logging.getLogger(DRAMATIQ_WORKER_LOGGER).filters)

    registry = Registry()

    @step(
        name="Welcome",
        triggers=[queue("signed-up", input=Signup, condition=lambda s, ctx: s.vip)],
        registry=registry,
        max_retries=0,
    )
    def welcome(signup: Signup, ctx: Context) -> None:
        raise RuntimeError("mail server down")

    runtime = memory_runtime(tmp_path, registry)
    caplog.set_level(logging.INFO)
    skipped = runtime.publisher.publish("signed-up", {"email": EMAIL, "vip": False})[0]
    failed = runtime.publisher.publish("signed-up", {"email": EMAIL, "vip": True})[0]
    with running_worker(runtime):
        drain(runtime, "Welcome")
    runtime.close()

    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith(f"Welcome[{failed}] failed for good after 1 attempt(s): RuntimeError") for line in lines)
    assert not any(EMAIL in line for line in lines), [line for line in lines if EMAIL in line]
    # The skip is the condition doing its job: not a WARNING (it stays at DEBUG, named the same way).
    assert not any(skipped in line for line in lines)
