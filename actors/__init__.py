"""Conveyor's workers: ``dramatiq actors`` imports this package.

Importing it boots the runtime: it reads config.toml, loads every flow of ``[project] flows``,
declares one Dramatiq actor per queue-, state- or cron-triggered step and sets the broker
Dramatiq's command line uses. This is the one module that boots on import, because that is
how ``dramatiq`` finds its broker; the flows themselves live in ``flows/`` and only declare.

``python -m actors ...`` (the operator's command line) is the exception: it boots after reading
its arguments, so ``--help`` or a mistyped command answers without config.toml or RabbitMQ.
"""

from __future__ import annotations

import sys

from dramatiq import Broker

from conveyor.runtime import Runtime, boot_or_exit

runtime: Runtime
broker: Broker

# Python sets argv[0] to "-m" while it imports the package of ``python -m actors``.
if sys.argv[:1] != ["-m"]:
    runtime = boot_or_exit()
    broker = runtime.broker

__all__ = ["broker", "runtime"]
