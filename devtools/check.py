"""``python -m devtools.check``: do the flows load and wire up? Exit 0 if so; else print why and exit 1.

It reads config.toml (or ``CONVEYOR_CONFIG``), imports every flow module, builds the runtime
and runs its start-up checks, without connecting to RabbitMQ. The development loop runs it
before restarting anything, so a file saved with a mistake leaves the running system alone.
"""

from __future__ import annotations

import sys

from conveyor.config import load_config
from conveyor.errors import ConfigError
from conveyor.runtime import build_runtime


def check() -> str:
    """A one-line summary of what loaded; raises :class:`~conveyor.errors.ConfigError` on a mistake."""
    config = load_config()
    runtime = build_runtime(config)
    try:
        http = sum(len(step.http_triggers) for step in runtime.registry)
        return (
            f"{len(runtime.registry)} steps in {', '.join(config.project.flows)}: "
            f"{len(runtime.actors)} on the workers, {http} HTTP routes, {len(runtime.cron_steps())} cron"
        )
    finally:
        runtime.close()


def main() -> None:
    try:
        print(check())
    except ConfigError as exc:
        sys.exit(f"conveyor: {exc}")


if __name__ == "__main__":
    main()
