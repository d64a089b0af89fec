"""``python -m scheduler``: run APScheduler with one job per cron step until interrupted."""

from __future__ import annotations

import logging

from conveyor.runtime import boot_or_exit
from scheduler import schedule_cron_steps


def main() -> None:
    runtime = boot_or_exit()
    scheduler = schedule_cron_steps(runtime)
    if not runtime.cron_steps():
        logging.getLogger("conveyor.scheduler").warning("No cron steps are declared; nothing to fire.")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
