"""``python -m devtools.launcher``: run the whole system (gateway, workers, scheduler).

With RabbitMQ reachable (or installed, in which case a project-owned node is started under
``var/rabbitmq``), each part runs as its own supervised process. Without RabbitMQ everything
runs in this one process on an in-memory broker, and the log says loudly that messages are
then lost when the process stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from conveyor.config import load_config
from conveyor.logs import setup_logging

from .localnode import LocalNode, port_open, rabbitmq_installed
from .supervisor import STOP_GRACE, Program, Supervisor

logger = logging.getLogger("conveyor.launcher")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.launcher", description=__doc__)
    parser.add_argument("--processes", type=int, default=2, help="dramatiq worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--memory", action="store_true", help="use the in-memory broker even if RabbitMQ is there")
    args = parser.parse_args()
    setup_logging()

    config = load_config()
    amqp = urlsplit(config.broker.url)
    port = amqp.port or 5672
    local = amqp.hostname in ("127.0.0.1", "localhost")
    if args.memory or config.broker.kind == "memory":
        run_embedded()
    elif port_open(port, amqp.hostname or "127.0.0.1"):
        logger.info("RabbitMQ answers on %s:%s", amqp.hostname, port)
        run_supervised(args.processes, args.threads)
    elif local and rabbitmq_installed():
        node = LocalNode(Path(config.root) / "var" / "rabbitmq", port=port)
        logger.info("Starting a project-owned RabbitMQ node %s (data in %s)", node.nodename, node.base)
        node.start()
        run_supervised(args.processes, args.threads)
    else:
        logger.warning("RabbitMQ is not installed or not reachable at %s:%s", amqp.hostname, port)
        run_embedded()


def run_supervised(processes: int, threads: int) -> None:
    python = sys.executable
    # Workers give back what they have not finished before the supervisor's grace runs out, and
    # stop in bounded time when no supervisor is left to kill them.
    shutdown_ms = str(int((STOP_GRACE - 5) * 1000))
    workers = ["-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads)]
    Supervisor(
        [
            Program("workers", [python, *workers, "--worker-shutdown-timeout", shutdown_ms]),
            Program("gateway", [python, "-m", "gateway"]),
            Program("scheduler", [python, "-m", "scheduler"]),
        ]
    ).run()


def run_embedded() -> None:
    logger.warning(
        "*** NO RABBITMQ: running everything in one process on an IN-MEMORY broker. Messages live "
        "only in memory and are LOST if this process stops. Install rabbitmq-server for durability. ***"
    )
    os.environ["CONVEYOR_BROKER"] = "memory"
    # The front doors are imported here, not at module level: only this mode needs them in-process.
    import uvicorn
    from apscheduler.schedulers.background import BackgroundScheduler
    from dramatiq import Worker

    from conveyor.gateway import build_app
    from conveyor.runtime import boot_or_exit
    from scheduler import schedule_cron_steps

    runtime = boot_or_exit()
    worker = Worker(runtime.broker, worker_threads=8)
    worker.start()
    scheduler = schedule_cron_steps(runtime, BackgroundScheduler(timezone=runtime.config.scheduler.timezone))
    scheduler.start()
    gateway = runtime.config.gateway
    try:
        uvicorn.run(build_app(runtime), host=gateway.host, port=gateway.port, access_log=False)
    finally:
        scheduler.shutdown(wait=False)
        threading.Thread(target=worker.stop, daemon=True).start()


if __name__ == "__main__":
    main()
