"""Trace every message: an enqueue span when it is sent, a run span for each attempt.

Listed before :class:`~conveyor.worker.middleware.Retries` and
:class:`~conveyor.worker.middleware.DeadLetters`: Dramatiq calls ``after_*`` hooks in reverse
order, so by the time this one ends a run span, Retries has decided whether the message will
be tried again or has failed for good, and what those two log is said while the span is current
(so it is kept with it).
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from ...tracing.tracer import Tracer
from .options import option

#: Where a running message's span is kept on its proxy.
_SPAN = "_conveyor_span"


class Tracing(Middleware):
    """Hands each message's life to the :class:`~conveyor.tracing.tracer.Tracer`.

    Parameters:
      tracer: the runtime's tracer.
    """

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        if self.tracer.active:
            self.tracer.sending(message, delay)

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None) -> None:
        if self.tracer.active:
            self.tracer.sent(message)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if self.tracer.active:
            setattr(message, _SPAN, self.tracer.run_started(message))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        span = getattr(message, _SPAN, None)
        if span is None:
            return
        dead_letter = option(broker, message, "dead_letter_queue") if message.failed else None
        self.tracer.run_ended(span, exception=exception, failed=message.failed, dead_letter=dead_letter)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        span = getattr(message, _SPAN, None)
        if span is not None:
            self.tracer.run_skipped(span)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.tracer.recorder is not None:
            self.tracer.recorder.flush()
