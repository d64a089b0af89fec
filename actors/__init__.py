"""Conveyor's workers: ``dramatiq actors`` imports this package.

Importing it reads config.toml, imports every flow under ``actors/flows/`` and declares one
Dramatiq actor per queue- or cron-triggered step on the configured broker.
"""

from __future__ import annotations

from conveyor import ConfigError, boot

try:
    runtime = boot()
except ConfigError as exc:
    # A configuration mistake is the operator's to fix: say what it is, without a traceback.
    raise SystemExit(f"conveyor: {exc}") from None

broker = runtime.broker

__all__ = ["broker", "runtime"]
