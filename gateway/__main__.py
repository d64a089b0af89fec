"""``python -m gateway [--host H] [--port P] [--workers N]``: serve the HTTP steps.

One worker is one uvicorn process; N are N independent processes on the port, each with a
``SO_REUSEPORT`` socket and a runtime of its own, watched by this one
(:mod:`conveyor.gateway.serving`).
"""

from __future__ import annotations

import argparse
import logging

from conveyor.gateway.serving import serve
from conveyor.runtime import boot_or_exit


def main() -> None:
    # Boots here first, so that a mistake in config.toml or a flow stops start-up once, here.
    runtime = boot_or_exit()
    gateway = runtime.config.gateway
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", default=gateway.host)
    parser.add_argument("--port", type=int, default=gateway.port)
    parser.add_argument("--workers", type=int, default=gateway.workers, help="gateway processes")
    args = parser.parse_args()
    where = gateway.model_copy(update={"host": args.host, "port": args.port})
    logging.getLogger("conveyor.gateway").info("%s", where.console_line(api_key=runtime.config.admin.api_key))
    if args.workers > 1:
        runtime.close()  # this process only watches the others: it holds no connection of its own
    # By name: one process imports it and finds this runtime; each of several boots its own.
    serve(
        "gateway.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=runtime.config.logging.level.lower(),
    )


if __name__ == "__main__":
    main()
