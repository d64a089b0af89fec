"""How long traces are kept: ``[tracing] retention_hours`` once ended (``failed_retention_hours`` for a
failed one), and at most ``max_traces`` whatever their age. Every scheduler prunes, every few minutes."""

from __future__ import annotations

import logging
import time

from ..config import TracingSection
from .queries import TraceStore

logger = logging.getLogger("conveyor.tracing")

#: Seconds between two prunings.
PRUNE_INTERVAL = 300


def prune_traces(store: TraceStore | None, settings: TracingSection, *, now: float | None = None) -> int:
    """Forget the traces ``settings`` no longer keeps; returns how many went."""
    if store is None:
        return 0
    try:
        removed = store.prune(
            now=time.time() if now is None else now,
            ok_age=settings.retention_hours * 3600,
            failed_age=settings.failed_retention_hours * 3600,
            max_traces=settings.max_traces,
        )
    except Exception as exc:
        # The next run tries again; tracing itself goes on meanwhile.
        logger.warning("Could not prune old traces (%s); trying again in %d s", exc, PRUNE_INTERVAL)
        return 0
    if removed:
        logger.info("Forgot %d old traces ([tracing] retention_hours, failed_retention_hours, max_traces)", removed)
    return removed
