"""Keep each span's log lines with it: ``ctx.logger``'s lines, and Conveyor's own about that message.

:class:`SpanLogs` is a logging handler on the root logger. A record emitted while a span is
current (see :data:`~conveyor.tracing.tracer.current_span`) becomes a
:class:`~conveyor.tracing.spans.LogLine` of that span's trace; other records pass it by.
"""

from __future__ import annotations

import logging
from typing import Any

from ..logs import STEP_FIELDS, STEP_MESSAGE
from .spans import LOG_LIMIT, TRACEBACK_LIMIT, LogLine, cut
from .tracer import current_recorder, current_span

#: Fields a step logger adds that the log line holds already.
_BOUND = ("step", "trace")


class SpanLogs(logging.Handler):
    """Records log lines written inside a span to the recorder of the tracer that opened the span
    (never raising, never waiting). INFO and above: Dramatiq's DEBUG lines name whole payloads."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        span = current_span.get()
        if span is None or record.name.startswith("conveyor.tracing"):
            return
        recorder = current_recorder.get()
        if recorder is None or not recorder.keeps_logs:  # metrics without a trace store: nothing keeps it
            return
        try:
            message = record.__dict__.get(STEP_MESSAGE)
            fields: dict[str, Any] = dict(record.__dict__.get(STEP_FIELDS) or {})
            for name in _BOUND:
                fields.pop(name, None)
            if message is None:
                message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                fields["traceback"] = cut(text, TRACEBACK_LIMIT, keep="tail")
            recorder.log(
                LogLine(
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    at=record.created,
                    level=record.levelname,
                    logger=record.name,
                    message=cut(str(message), LOG_LIMIT) or "",
                    step=span.step,
                    fields=fields,
                )
            )
        except Exception:
            self.handleError(record)


def install() -> None:
    """Put a :class:`SpanLogs` on the root logger, once per process."""
    root = logging.getLogger()
    if not any(isinstance(handler, SpanLogs) for handler in root.handlers):
        root.addHandler(SpanLogs())
