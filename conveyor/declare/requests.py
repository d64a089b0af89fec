"""What an HTTP-triggered handler receives as its input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    """An HTTP request, already validated against the step's schemas.

    ``body`` and ``query`` are instances of the trigger's ``body=``/``query=`` models (or the
    raw JSON / a dict when the trigger declares none); ``path_params`` holds ``{orderId}``.

    A handler answers with ``{"status": 201, "body": ..., "headers": {...}}`` (``body`` may be a
    pydantic model), like Motia's ``{ status, body }``.
    """

    method: str
    path: str
    path_params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    query: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def pathParams(self) -> dict[str, str]:  # noqa: N802 - Motia's spelling, for readers of the seeds
        return self.path_params
