"""Conveyor's logging: one format in every process (text or JSON lines), quiet by default, and
structured lines for steps, each naming its step and trace."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from .tracing.spans import ERROR_LIMIT, cut

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"

#: Attributes of a step's log records holding its message and its fields apart from the line.
STEP_MESSAGE = "conveyor_message"
STEP_FIELDS = "conveyor_fields"

#: The logger of Dramatiq's worker threads, which names messages by their payload.
DRAMATIQ_WORKER_LOGGER = "dramatiq.worker.WorkerThread"

#: ``[logging] format``: ``time level logger message`` lines, or one JSON object per line.
LogFormat = Literal["text", "json"]

#: uvicorn's loggers, which its own logging config gives handlers (and formats) of their own.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def setup_logging(level: str = "INFO", *, format: LogFormat = "text") -> None:
    """Give every log line of this process Conveyor's format, at ``level``, on stderr.

    Whatever set logging up before (the ``dramatiq`` command's ``basicConfig``, uvicorn's own
    config) keeps its handlers' destinations but gets Conveyor's formatter; uvicorn's loggers
    lose their handlers and write through the root's. ``format="json"`` makes every line, from
    any library, one JSON object (see :class:`JsonFormatter`). Quiet by default: pika says only
    warnings, APScheduler only warnings unless ``level`` is DEBUG, and Dramatiq's worker threads
    name messages without their payloads and leave a failure's line to Conveyor's Retries and
    DeadLetters (one WARNING each, without traceback: the trace keeps it).
    """
    root = logging.getLogger()
    formatter = JsonFormatter() if format == "json" else logging.Formatter(_FORMAT)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level)
    _route_uvicorn_to_root()
    logging.getLogger("pika").setLevel(logging.WARNING)
    # APScheduler says three INFO lines a cron fire ("Added job", "Running job", "executed
    # successfully"); Conveyor's "Fired cron step" is the one that matters.
    logging.getLogger("apscheduler").setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    keep_payloads_out()
    # Skip the stack walk that finds each record's file and line: no Conveyor or Dramatiq format
    # shows them, and it costs more than the rest of a log call (the logging module's own knob).
    logging._srcfile = None


def keep_payloads_out() -> None:
    """Put :class:`WithoutPayloads` and :class:`FailuresToRetries` on Dramatiq's worker-thread logger (once).

    Every runtime does, whoever set logging up: lines kept with a trace must not hold payloads either.
    """
    worker_logger = logging.getLogger(DRAMATIQ_WORKER_LOGGER)
    for kind in (WithoutPayloads, FailuresToRetries):
        if not any(isinstance(f, kind) for f in worker_logger.filters):
            worker_logger.addFilter(kind())


def _route_uvicorn_to_root() -> None:
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if name == "uvicorn.access" and not logger.handlers and not logger.propagate:
            continue  # uvicorn turned its access log off (access_log=False): it stays off
        logger.handlers.clear()
        logger.propagate = True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ``ts``, ``level``, ``logger``, ``msg``, ``pid``, the step's fields.

    ``ts`` is the record's time in UTC (ISO 8601, milliseconds). A step's line
    (:class:`StepLogger`) has its message as ``msg`` and its fields (``step``, ``trace``,
    ``message`` and the handler's own) at the top level; a field named like one of the line's
    own keys is kept as ``field.<name>``. An exception's traceback is in ``traceback``::

        {"ts": "2026-01-05T10:00:00.123+00:00", "level": "INFO", "logger": "conveyor.step.CreateOrder",
         "msg": "Order created", "orderId": "o-1", "step": "CreateOrder", "trace": "4f...", "pid": 4242}
    """

    def format(self, record: logging.LogRecord) -> str:
        message = getattr(record, STEP_MESSAGE, None)
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # A step's record holds its parts: rendering them avoids JSON inside JSON (json_lines).
            "msg": record.getMessage() if message is None else str(message),
        }
        fields = getattr(record, STEP_FIELDS, None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                line[f"field.{key}" if key in _OWN_KEYS else str(key)] = value
        line["pid"] = record.process
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


_OWN_KEYS = frozenset({"ts", "level", "logger", "msg", "pid", "traceback", "stack"})


class FailuresToRetries(logging.Filter):
    """Leaves a failed message's line to Conveyor's Retries and DeadLetters: Dramatiq's own becomes DEBUG.

    Dramatiq's worker thread logs each failed attempt at ERROR with its traceback, before any
    middleware decides what happens next. Conveyor's :class:`~conveyor.worker.middleware.Retries`
    says it in one WARNING line (the error, the attempt, the delay) and
    :class:`~conveyor.worker.middleware.DeadLetters` says where a dead message went; the
    traceback is kept with the trace. At DEBUG, Dramatiq's line (and traceback) still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_FAILED) and record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


#: How Dramatiq's worker thread starts its line about a failed message (unhandled or expected exception).
_FAILED = "Failed to process message %s with "


class WithoutPayloads(logging.Filter):
    """Keeps messages' payloads out of Dramatiq's worker log lines, and its skip lines out of WARNING.

    Dramatiq names a message in its lines by ``ActorName(<every argument>)``: a failed or
    skipped order would put the customer's data (an email address, an address) into the logs.
    Here a message reads ``ActorName[message id]``. A message a step's condition skipped is
    the flow working as declared, not a warning: that line becomes DEBUG.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(_is_message(arg) for arg in record.args):
            record.args = tuple(_named(arg) if _is_message(arg) else arg for arg in record.args)
            if record.msg == "Message %s was skipped." and record.levelno == logging.WARNING:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _is_message(value: object) -> bool:
    return hasattr(value, "message_id") and hasattr(value, "actor_name") and hasattr(value, "args")


def _named(message: Any) -> str:
    return f"{message.actor_name}[{message.message_id}]"


def error_text(exception: BaseException) -> str:
    """``Type: message`` of an exception for a log line: on one line, and cut to a bounded size."""
    text = f"{type(exception).__name__}: {exception}" if str(exception) else type(exception).__name__
    return cut(" ".join(text.split()), ERROR_LIMIT) or ""


def class_logger(module: str, cls: type) -> logging.Logger:
    """The logger of a class, named ``module.Class`` (as Dramatiq names its middleware's loggers)."""
    return logging.getLogger(f"{module}.{cls.__name__}")


class StepLogger:
    """A logger bound to one step and one trace.

    ``ctx.logger.info("Order created", {"orderId": oid})`` and
    ``ctx.logger.info("Order created", orderId=oid)`` both log
    ``Order created orderId=... step=CreateOrder trace=...``.
    """

    def __init__(self, step: str, trace_id: str, *, json_lines: bool = False, **bound: Any) -> None:
        self._logger = logging.getLogger(f"conveyor.step.{step}")
        self._bound = {"step": step, "trace": trace_id, **{k: v for k, v in bound.items() if v is not None}}
        self._json = json_lines

    def debug(self, msg: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, data, fields)

    def info(self, msg: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._log(logging.INFO, msg, data, fields)

    def warning(self, msg: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._log(logging.WARNING, msg, data, fields)

    warn = warning

    def error(self, msg: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._log(logging.ERROR, msg, data, fields)

    def exception(self, msg: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._log(logging.ERROR, msg, data, fields, exc_info=True)

    def _log(
        self,
        level: int,
        msg: str,
        data: Mapping[str, Any] | None,
        fields: dict[str, Any],
        exc_info: bool = False,
    ) -> None:
        if not self._logger.isEnabledFor(level):
            return  # skip formatting entirely: logging must not cost when it is off
        merged = {**(data or {}), **fields, **self._bound}
        if self._json:
            line = json.dumps({"msg": msg, **merged}, default=str)
        else:
            line = msg + "".join(f" {k}={_text(v)}" for k, v in merged.items())
        # The parts stay on the record too, for whatever reads records rather than lines (tests, traces).
        extra = {STEP_MESSAGE: msg, STEP_FIELDS: merged}
        self._logger.log(level, line, exc_info=exc_info, extra=extra)


def _text(value: Any) -> str:
    if isinstance(value, str) and value and " " not in value:
        return value
    return json.dumps(value, default=str)
