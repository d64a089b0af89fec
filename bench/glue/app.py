"""CreateOrder as a small Starlette app: ``POST /orders`` validates, stores the order and enqueues it.

``python -m bench.glue.app --port P`` serves it the way ``python -m gateway`` serves Conveyor's
gateway: ``uvicorn.run(app, host=..., port=..., log_level=..., access_log=False)``, one process.
The SQLite write and the confirmed publish block, so they run in Starlette's thread pool rather
than on the event loop, as a careful user writes it.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import time
from typing import Any

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .actors import now_iso, process_order, state

logger = logging.getLogger("bench.glue.app")


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    productId: str = Field(min_length=1, max_length=200)
    quantity: int = Field(gt=0, le=1_000_000)
    price: float = Field(gt=0, le=1_000_000)


class CreateOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customerId: str = Field(min_length=1, max_length=200)
    items: list[OrderItem] = Field(min_length=1)


def _store_and_enqueue(order: dict[str, Any], event: dict[str, Any]) -> None:
    state.set("orders", order["orderId"], order)
    process_order.send(event)


async def create_order(request: Request) -> JSONResponse:
    try:
        body = CreateOrderBody.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    logger.info("Received new order customerId=%s itemCount=%d", body.customerId, len(body.items))
    items = [item.model_dump() for item in body.items]
    total = round(sum(item.price * item.quantity for item in body.items), 2)
    order_id = f"order-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
    order = {
        "orderId": order_id,
        "customerId": body.customerId,
        "items": items,
        "total": total,
        "status": "pending",
        "createdAt": now_iso(),
    }
    event = {"orderId": order_id, "customerId": body.customerId, "items": items, "total": total}
    await run_in_threadpool(_store_and_enqueue, order, {**event, "timestamp": order["createdAt"]})
    logger.info("Order created and enqueued orderId=%s", order_id)
    return JSONResponse(order)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/orders", create_order, methods=["POST"]), Route("/health", health)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.glue.app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    # The app's own INFO lines, as Conveyor's gateway logs CreateOrder's.
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    main()
