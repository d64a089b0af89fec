"""``python -m gateway [--host H] [--port P]``: serve the HTTP steps with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

import actors
from gateway import build_app


def main() -> None:
    gateway = actors.runtime.config.gateway
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--host", default=gateway.host)
    parser.add_argument("--port", type=int, default=gateway.port)
    args = parser.parse_args()
    uvicorn.run(
        build_app(actors.runtime),
        host=args.host,
        port=args.port,
        log_level=actors.runtime.config.logging.level.lower(),
        access_log=False,
    )


if __name__ == "__main__":
    main()
