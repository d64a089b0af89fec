"""The state-trigger outbox: publish the triggers a write recorded, and sweep up what a crash left.

A write to a watched group records one pending trigger per matching step in the same
transaction (see :class:`~conveyor.store.StateStore`), claimed by the writing process. Right
after the commit, :meth:`Outbox.publish` sends them and forgets those RabbitMQ confirmed; if
the process dies first, :meth:`Outbox.sweep` (run by any number of schedulers) claims them
once their claim has lapsed and sends them.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from ..errors import PublishError
from .base import CLAIM_LEASE, StateStore
from .transactions import PendingTrigger

logger = logging.getLogger("conveyor.outbox")

#: ``send(step, change, trace_id, group)``: send one state change to one step.
Send = Callable[[str, dict[str, Any], str | None, str], Any]


class Outbox:
    """Publishes the state triggers recorded in ``store``.

    Parameters:
      store: the state store whose writes record the triggers.
      send: sends one change to one step and returns once it is confirmed.
      in_background: runs a publish elsewhere when called from an event loop (the
        publisher's thread pool), so a write on a loop never waits for RabbitMQ.
    """

    def __init__(
        self,
        store: StateStore,
        send: Send,
        in_background: Callable[[], concurrent.futures.Executor | None] = lambda: None,
    ) -> None:
        self.store = store
        self._send = send
        self._in_background = in_background

    def after_commit(self, pending: list[PendingTrigger]) -> None:
        """Called by the store right after a write committed triggers."""
        executor = self._in_background()
        if executor is not None:
            executor.submit(self.publish, pending)
        else:
            self.publish(pending)

    def publish(self, pending: list[PendingTrigger]) -> int:
        """Publish recorded triggers and forget those RabbitMQ confirmed; returns how many."""
        done: list[int] = []
        try:
            for trigger in pending:
                self._send(trigger.step, trigger.change, trigger.trace_id, trigger.change["group"])
                done.append(trigger.id)
        except PublishError as exc:
            logger.warning("State trigger publish failed (%s); the sweep will retry it.", exc)
        finally:
            self.store.triggers_published(done)
        return len(done)

    def sweep(self, older_than: float = CLAIM_LEASE) -> int:
        """Publish triggers a crash left behind (claimed over ``older_than`` seconds ago); returns how many."""
        count = 0
        while pending := self.store.claim_triggers(lease=older_than):
            published = self.publish(pending)
            count += published
            if published < len(pending):
                break
        if count:
            logger.info("Swept %d state trigger(s) left unpublished.", count)
        return count
