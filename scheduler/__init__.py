"""Conveyor's scheduler, the front door: ``python -m scheduler`` fires cron steps on their schedules
(the jobs come from :mod:`conveyor.scheduling`)."""

from __future__ import annotations

from conveyor.scheduling import fire_cron_step, schedule_cron_steps

__all__ = ["fire_cron_step", "schedule_cron_steps"]
