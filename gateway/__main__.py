"""``python -m gateway [--host H] [--port P] [--workers N]``: serve the HTTP steps with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from conveyor.runtime import boot_or_exit


def main() -> None:
    runtime = boot_or_exit()
    gateway = runtime.config.gateway
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", default=gateway.host)
    parser.add_argument("--port", type=int, default=gateway.port)
    parser.add_argument("--workers", type=int, default=gateway.workers, help="gateway processes")
    args = parser.parse_args()
    uvicorn.run(
        # By name, so that each of several worker processes builds its own app (and publisher).
        "gateway.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=runtime.config.logging.level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
