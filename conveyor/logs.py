"""Structured logging for steps: every line names its step and trace."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"

#: Attributes of a step's log records holding its message and its fields apart from the line.
STEP_MESSAGE = "conveyor_message"
STEP_FIELDS = "conveyor_fields"

#: The logger of Dramatiq's worker threads, which names messages by their payload.
DRAMATIQ_WORKER_LOGGER = "dramatiq.worker.WorkerThread"


def setup_logging(level: str = "INFO") -> None:
    """Send Conveyor's logs to stderr, unless the process (e.g. ``dramatiq``) already set logging up."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)
    worker_logger = logging.getLogger(DRAMATIQ_WORKER_LOGGER)
    if not any(isinstance(f, WithoutPayloads) for f in worker_logger.filters):
        worker_logger.addFilter(WithoutPayloads())
    # Skip the stack walk that finds each record's file and line: no Conveyor or Dramatiq format
    # shows them, and it costs more than the rest of a log call (the logging module's own knob).
    logging._srcfile = None


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
