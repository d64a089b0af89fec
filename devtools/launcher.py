"""``python -m devtools.launcher [--reload]``: run the whole system (gateway, workers, scheduler).

With RabbitMQ reachable (or installed, in which case a project-owned node is started under
``var/rabbitmq``), each part runs as its own supervised process. Without RabbitMQ everything
runs in this one process on an in-memory broker, and the log says loudly that messages are
then lost when the process stops.

With ``--reload`` (``bash scripts/dev.sh``), saving a file of a flow package or config.toml
restarts the processes once the flows load (see :mod:`devtools.reload`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from conveyor.config import config_path, load_config
from conveyor.logs import setup_logging

from .localnode import LocalNode, port_open, rabbitmq_installed
from .reload import DevLoop, flow_directories
from .supervisor import STOP_GRACE, Program, Supervisor

logger = logging.getLogger("conveyor.launcher")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.launcher", description=__doc__)
    parser.add_argument("--processes", type=int, default=2, help="dramatiq worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--memory", action="store_true", help="use the in-memory broker even if RabbitMQ is there")
    parser.add_argument(
        "--reload", action="store_true", help="restart the processes when a flow's file or config.toml is saved"
    )
    args = parser.parse_args()
    setup_logging()

    config = load_config()
    logger.info("%s", config.gateway.console_line(api_key=config.admin.api_key))
    watched = (
        [*flow_directories(config.project.flows, Path(config.root)), config_path().resolve()] if args.reload else []
    )
    amqp = urlsplit(config.broker.urls[0])
    port = amqp.port or 5672
    local = amqp.hostname in ("127.0.0.1", "localhost")
    if args.memory or config.broker.kind == "memory":
        run_embedded(watched)
    elif port_open(port, amqp.hostname or "127.0.0.1"):
        logger.info("RabbitMQ answers on %s:%s", amqp.hostname, port)
        run_supervised(args.processes, args.threads, watched)
    elif local and rabbitmq_installed():
        node = LocalNode(Path(config.root) / "var" / "rabbitmq", port=port)
        logger.info("Starting a project-owned RabbitMQ node %s (data in %s)", node.nodename, node.base)
        node.start()
        run_supervised(args.processes, args.threads, watched)
    else:
        logger.warning("RabbitMQ is not installed or not reachable at %s:%s", amqp.hostname, port)
        run_embedded(watched)


def run_supervised(processes: int, threads: int, watched: list[Path]) -> None:
    """Gateway, workers and scheduler as supervised processes; with ``watched``, restarted when those change."""
    python = sys.executable
    # Workers give back what they have not finished before the supervisor's grace runs out, and
    # stop in bounded time when no supervisor is left to kill them.
    shutdown_ms = str(int((STOP_GRACE - 5) * 1000))
    workers = ["-m", "dramatiq", "actors", "-p", str(processes), "-t", str(threads)]
    supervisor = Supervisor(
        [
            # On a restart, new workers start at once while the old ones finish their messages.
            Program("workers", [python, *workers, "--worker-shutdown-timeout", shutdown_ms], overlap=True),
            Program("gateway", [python, "-m", "gateway"]),
            Program("scheduler", [python, "-m", "scheduler"]),
        ]
    )
    loop = DevLoop(watched, supervisor.request_restart) if watched else None
    if loop is not None:
        loop.start()
    try:
        supervisor.run()
    finally:
        if loop is not None:
            loop.stop()


def run_embedded(watched: list[Path]) -> None:
    """Everything in this process on the in-memory broker; with ``watched``, it starts over when those change."""
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
    if watched:
        # One process holds everything: new code means a new process, in place of this one.
        DevLoop(watched, lambda: os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])).start()
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
