"""``python -m gateway [--host H] [--port P] [--workers N]``: serve the HTTP steps.

One worker is one uvicorn process; N are N independent processes on the port, each with a
``SO_REUSEPORT`` socket and a runtime of its own, watched by this one
(:mod:`conveyor.gateway.serving`).
"""

from __future__ import annotations

import argparse
import logging
import os

from conveyor.gateway.serving import serve
from conveyor.runtime import boot_or_exit

#: Where ``--host`` and ``--port`` go: the config every gateway process reads (and so the console's
#: access rule, which depends on the host), not only the socket this command opens.
OVERRIDES = {"host": "CONVEYOR_GATEWAY_HOST", "port": "CONVEYOR_GATEWAY_PORT"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", help="the address to listen on (default: [gateway] host)")
    parser.add_argument("--port", type=int, help="the port (default: [gateway] port)")
    parser.add_argument("--workers", type=int, help="gateway processes (default: [gateway] workers)")
    args = parser.parse_args()
    for name, variable in OVERRIDES.items():
        if (value := getattr(args, name)) is not None:
            os.environ[variable] = str(value)  # the processes serve() starts inherit it
    # Boots here first, so that a mistake in config.toml or a flow stops start-up once, here.
    runtime = boot_or_exit()
    gateway = runtime.config.gateway
    workers = args.workers or gateway.workers
    logging.getLogger("conveyor.gateway").info("%s", gateway.console_line(api_key=runtime.config.admin.api_key))
    if workers > 1:
        runtime.close()  # this process only watches the others: it holds no connection of its own
    # By name: one process imports it and finds this runtime; each of several boots its own.
    serve(
        "gateway.asgi:app",
        host=gateway.host,
        port=gateway.port,
        workers=workers,
        log_level=runtime.config.logging.level.lower(),
    )


if __name__ == "__main__":
    main()
