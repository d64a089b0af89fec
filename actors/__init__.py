"""Conveyor's workers: ``dramatiq actors`` imports this package.

Importing it boots the runtime: it reads config.toml, loads every flow of ``[project] flows``,
declares one Dramatiq actor per queue-, state- or cron-triggered step and sets the broker
Dramatiq's command line uses. This is the one module that boots on import, because that is
how ``dramatiq`` finds its broker; the flows themselves live in ``flows/`` and only declare.
"""

from __future__ import annotations

from conveyor.runtime import boot_or_exit

runtime = boot_or_exit()
broker = runtime.broker

__all__ = ["broker", "runtime"]
