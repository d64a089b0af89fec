"""Conveyor's scheduler: fires cron steps on their schedules (``python -m scheduler``)."""

from __future__ import annotations

from .service import schedule_cron_steps

__all__ = ["schedule_cron_steps"]
