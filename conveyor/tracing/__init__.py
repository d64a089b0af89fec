"""The trace id of the work running in this thread or task, so writes it causes can carry it on."""

from __future__ import annotations

from contextvars import ContextVar

#: Set around each handler call; state triggers fired by its writes inherit the trace.
current_trace_id: ContextVar[str | None] = ContextVar("conveyor_trace_id", default=None)
