"""What the test environments record for a test to assert on: enqueues and log lines."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..logs import STEP_FIELDS, STEP_MESSAGE


@dataclass(frozen=True)
class Enqueue:
    """One ``ctx.enqueue``: the topic, the data as it travels (JSON), and the delay and priority asked for."""

    topic: str
    data: Any
    delay: float | None = None
    priority: int | str | None = None
    trace_id: str | None = None
    message_id: str = ""


@dataclass(frozen=True)
class LogLine:
    """One log record of Conveyor's loggers.

    ``message`` is what the step logged (``"Order created"``) and ``fields`` what it logged
    with it (``orderId``, plus ``step`` and ``trace``); ``text`` is the whole line.
    """

    level: str
    logger: str
    message: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    #: The exception logged with the line (``logger.exception``), if any.
    error: BaseException | None = None

    @property
    def step(self) -> str | None:
        """The step that logged the line, for a step's own lines."""
        value = self.fields.get("step")
        return value if isinstance(value, str) else None


class Refusals:
    """Which names (queues, topics) a test environment refuses to publish to, and how many more times.

    Thread-safe: the handlers that publish run on the worker's threads.
    """

    def __init__(self) -> None:
        self._left: dict[str, int | None] = {}
        self._lock = threading.Lock()

    @contextmanager
    def refusing(self, name: str, times: int | None) -> Iterator[None]:
        """Refuse ``name`` while inside: ``times`` times, or every time (``None``)."""
        with self._lock:
            self._left[name] = times
        try:
            yield
        finally:
            with self._lock:
                self._left.pop(name, None)

    def take(self, name: str) -> bool:
        """Should this publish to ``name`` be refused? Counts it if so."""
        with self._lock:
            if name not in self._left:
                return False
            left = self._left[name]
            if left is not None:
                if left <= 1:
                    del self._left[name]
                else:
                    self._left[name] = left - 1
            return True


class LogCapture(logging.Handler):
    """Keeps the records of the ``conveyor`` loggers as :class:`LogLine`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.lines.append(
            LogLine(
                level=record.levelname,
                logger=record.name,
                message=getattr(record, STEP_MESSAGE, text),
                text=text,
                fields=dict(getattr(record, STEP_FIELDS, {})),
                error=record.exc_info[1] if record.exc_info else None,
            )
        )


@contextmanager
def capturing_logs(capture: LogCapture, level: str) -> Iterator[None]:
    """Send the ``conveyor`` loggers' records at ``level`` and above to ``capture`` while inside."""
    logger = logging.getLogger("conveyor")
    previous = logger.level
    logger.setLevel(level)
    logger.addHandler(capture)
    try:
        yield
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)
