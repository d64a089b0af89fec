"""The ceiling for bench/gateway.py: a bare Starlette app whose ``POST /orders`` only echoes the JSON body.

``python -m bench.echo_app --port P`` serves it the way ``python -m gateway`` serves the
gateway (``uvicorn.run(app, host=..., port=..., log_level=..., access_log=False)``, uvicorn's
defaults otherwise), so the difference between the two is Conveyor's work per request.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    """Answer with the JSON body the client sent."""
    return JSONResponse(await request.json())


app = Starlette(routes=[Route("/orders", echo, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
