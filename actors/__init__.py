"""Conveyor's workers: ``dramatiq actors`` imports this package.

Importing it reads config.toml, imports every flow under ``actors/flows/`` and declares one
Dramatiq actor per queue- or cron-triggered step on the configured broker.
"""

from __future__ import annotations

from conveyor import boot

runtime = boot()
broker = runtime.broker

__all__ = ["broker", "runtime"]
