"""The outbox: publish what a transaction recorded once it commits, and sweep up what a crash left.

Two kinds of rows commit with the writes of a transaction: a state trigger per matching step
of a watched group's write, and whole Dramatiq messages staged with
:meth:`~conveyor.store.StateStore.stage_message` (cron fires, idempotent HTTP requests).
Both are claimed by the committing process, which publishes them right after the commit
(:meth:`Outbox.publish`) and forgets those RabbitMQ confirmed. If it dies first,
:meth:`Outbox.sweep` (run by every scheduler) claims them once their claim has lapsed and
sends them: at least once, each staged message with its own message id.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

import dramatiq

from ..errors import PublishError
from ..tracing.tracer import in_current_span
from .base import StateStore
from .outbox_rows import CLAIM_LEASE
from .transactions import Pending, PendingTrigger

logger = logging.getLogger("conveyor.outbox")

#: ``send(step, change, trace_id, group)``: send one state change to one step.
Send = Callable[[str, dict[str, Any], str | None, str], Any]
#: ``resend(message, delay_ms)``: publish a whole message as it was built.
Resend = Callable[[dramatiq.Message[Any], int | None], Any]


class Outbox:
    """Publishes the state triggers and staged messages recorded in ``store``.

    Parameters:
      store: the state store whose transactions record them.
      send: sends one state change to one step and returns once it is confirmed.
      resend: publishes one staged message (with its delay in milliseconds) and returns once confirmed.
      in_background: runs a publish elsewhere when called from an event loop (the
        publisher's thread pool), so a write on a loop never waits for RabbitMQ.
    """

    def __init__(
        self,
        store: StateStore,
        send: Send,
        resend: Resend,
        in_background: Callable[[], concurrent.futures.Executor | None] = lambda: None,
    ) -> None:
        self.store = store
        self._send = send
        self._resend = resend
        self._in_background = in_background

    def after_commit(self, pending: list[Pending]) -> None:
        """Called by the store right after a transaction committed outbox rows."""
        executor = self._in_background()
        if executor is not None:
            # In the writer's span, so the triggers' enqueues know what wrote the state.
            executor.submit(in_current_span(self.publish), pending)
        else:
            self.publish(pending)

    def publish(self, pending: list[Pending]) -> int:
        """Publish outbox rows, in order, and forget those RabbitMQ confirmed; returns how many.

        The first publish that fails stops the rest: they stay for the sweep.
        """
        done: list[int] = []
        try:
            for row in pending:
                if isinstance(row, PendingTrigger):
                    self._send(row.step, row.change, row.trace_id, row.change["group"])
                else:
                    self._resend(dramatiq.Message.decode(row.encoded), row.delay_ms)
                done.append(row.id)
        except PublishError as exc:
            logger.warning("Outbox publish failed (%s); the sweep will retry it.", exc)
        finally:
            self.store.outbox_published(done)
        return len(done)

    def sweep(self, older_than: float = CLAIM_LEASE) -> int:
        """Publish rows a crash left behind (claimed over ``older_than`` seconds ago); returns how many."""
        count = 0
        while pending := self.store.claim_outbox(lease=older_than):
            published = self.publish(pending)
            count += published
            if published < len(pending):
                break
        if count:
            logger.info("Swept %d outbox row(s) left unpublished (state triggers, staged messages).", count)
        return count
