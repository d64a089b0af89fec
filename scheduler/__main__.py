"""``python -m scheduler``: run APScheduler with one job per cron step until interrupted."""

from __future__ import annotations

import logging

import actors
from scheduler import schedule_cron_steps


def main() -> None:
    scheduler = schedule_cron_steps(actors.runtime)
    if not actors.runtime.cron_steps():
        logging.getLogger("conveyor.scheduler").warning("No cron steps are declared; nothing to fire.")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
