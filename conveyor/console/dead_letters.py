"""``/dead-letters``: every step's dead-letter queue, one step's dead messages, one in full, and the
actions on them (replay one, replay all of a step, purge a step), through :class:`~conveyor.ops.dlq.DeadLetterQueue`.

Every action is a POST (the console checks its CSRF token first) and answers with a 303 to the step's
page, which shows what happened. A purge also needs ``confirm=<step name>`` in its form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import (
    BrokerUnavailableError,
    ConveyorError,
    DeadMessageNotFoundError,
    PublishError,
    UnknownStepError,
    UnsupportedBrokerError,
)
from ..ops.dlq import DeadLetterQueue, StepDeadLetters
from .rendering import Console, console_root

logger = logging.getLogger("conveyor.console.dead_letters")

#: Dead messages listed per step on the overview, and at most on a step's page.
OVERVIEW_LIMIT = 20
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Characters of a dead message's data shown in full on its page; the rest is cut (its size is said).
DATA_LIMIT = 64 * 1024
#: Longest flash message a redirect carries.
FLASH_LIMIT = 400


def _overview(dlq: DeadLetterQueue) -> tuple[dict[str, int], list[StepDeadLetters]]:
    counts = dlq.counts()
    return counts, [dlq.listing(step, limit=OVERVIEW_LIMIT) for step, count in counts.items() if count]


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}; got {value[:40]!r}")
    return int(value)


def _shown_data(data: Any) -> tuple[str, int]:
    """The data as pretty JSON cut to :data:`DATA_LIMIT` characters, and its full length."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    return text[:DATA_LIMIT], len(text)


def routes(console: Console) -> list[BaseRoute]:
    runtime = console.runtime

    def unknown_step(request: Request, step: str) -> Response | None:
        if step in runtime.actors:
            return None
        reason = "is an HTTP step, which has no queue" if step in runtime.registry.steps else "is not declared"
        known = ", ".join(sorted(runtime.actors)) or "none"
        return console.error(request, 404, f"Step {step!r} {reason}. Steps with dead-letter queues: {known}.")

    async def using_rabbitmq(request: Request, work: Callable[[DeadLetterQueue], Any]) -> Any:
        """``work(dlq)`` off the event loop; a :class:`Response` (the error page) when RabbitMQ cannot do it."""
        try:
            return await console.blocking(lambda: work(DeadLetterQueue(runtime)))
        except UnsupportedBrokerError as exc:
            return console.error(request, 503, f"Dead letters need RabbitMQ: {exc}.", title="RabbitMQ needed")
        except UnknownStepError as exc:
            return console.error(request, 404, f"{exc}.")
        except DeadMessageNotFoundError as exc:
            return console.error(request, 404, f"{exc}.")
        except PublishError as exc:
            return console.error(request, 503, f"Nothing more was replayed: {exc}. Try again once RabbitMQ answers.")
        except (BrokerUnavailableError, ConveyorError, OSError) as exc:
            logger.warning("The dead-letters page could not reach RabbitMQ: %s", exc)
            return console.error(request, 503, f"RabbitMQ could not be reached: {exc}. Try again shortly.")

    def back(request: Request, step: str, flash: str, trace_id: str | None = None) -> Response:
        query = {"flash": flash[:FLASH_LIMIT], **({"trace": trace_id} if trace_id else {})}
        return RedirectResponse(f"{console_root(request)}/dead-letters/{quote(step, safe='')}?{urlencode(query)}", 303)

    async def overview(request: Request) -> Response:
        note: str | None
        try:
            counts, listings = await console.blocking(lambda: _overview(DeadLetterQueue(runtime)))
        except (ConveyorError, OSError) as exc:  # the memory broker, or RabbitMQ down: a note, not an error
            counts, listings, note = {}, [], str(exc)
        else:
            note = None
        return console.render(
            request, "dead_letters.html", title="Dead letters", counts=counts, listings=listings, note=note
        )

    async def one_step(request: Request) -> Response:
        step = request.path_params["step"]
        if refused := unknown_step(request, step):
            return refused
        try:
            limit = _limit(request.query_params.get("limit"))
        except ValueError as exc:
            return console.error(request, 400, f"Bad paging: {exc}.")
        found = await using_rabbitmq(request, lambda dlq: dlq.listing(step, limit=limit))
        if isinstance(found, Response):
            return found
        return console.render(
            request,
            "dead_letters_step.html",
            title=f"Dead letters of {step}",
            step=step,
            listing=found,
            flash=request.query_params.get("flash", "")[:FLASH_LIMIT],
            flash_trace=request.query_params.get("trace", "")[:64],
        )

    async def one_message(request: Request) -> Response:
        step, message_id = request.path_params["step"], request.path_params["message_id"]
        if refused := unknown_step(request, step):
            return refused
        found = await using_rabbitmq(request, lambda dlq: dlq.get(step, message_id))
        if isinstance(found, Response):
            return found
        data, size = _shown_data(found.data)
        return console.render(
            request, "dead_letters_message.html", title=f"Dead message {message_id}", dead=found, data=data, size=size
        )

    async def replay_one(request: Request) -> Response:
        step, message_id = request.path_params["step"], request.path_params["message_id"]
        if refused := unknown_step(request, step):
            return refused
        done = await using_rabbitmq(request, lambda dlq: dlq.replay(step, message_id))
        if isinstance(done, Response):
            return done
        flash = f"Replayed message {done.message_id} as message {done.new_message_id}, in trace {done.trace_id}."
        return back(request, step, flash, done.trace_id)

    async def replay_all(request: Request) -> Response:
        step = request.path_params["step"]
        if refused := unknown_step(request, step):
            return refused
        done = await using_rabbitmq(request, lambda dlq: dlq.replay_all(step))
        if isinstance(done, Response):
            return done
        flash = f"Replayed {len(done)} dead message(s) of {step}." if done else f"{step} had no dead messages."
        return back(request, step, flash)

    async def purge(request: Request) -> Response:
        step = request.path_params["step"]
        if refused := unknown_step(request, step):
            return refused
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        confirmed = (form.get("confirm") or [""])[0].strip()
        if confirmed != step:
            message = (
                f"Nothing was purged: to purge the dead messages of {step}, type the step name {step!r} "
                "in the confirmation field of the purge form."
            )
            return console.error(request, 400, message, title="Purge not confirmed")
        done = await using_rabbitmq(request, lambda dlq: dlq.purge(step))
        if isinstance(done, Response):
            return done
        flash = f"Purged {done.messages} dead message(s) and {done.records} failure record(s) of {step}."
        return back(request, step, flash)

    return [
        Route("/dead-letters", overview, methods=["GET"]),
        Route("/dead-letters/{step}", one_step, methods=["GET"]),
        Route("/dead-letters/{step}/replay", replay_all, methods=["POST"]),
        Route("/dead-letters/{step}/purge", purge, methods=["POST"]),
        Route("/dead-letters/{step}/{message_id}", one_message, methods=["GET"]),
        Route("/dead-letters/{step}/{message_id}/replay", replay_one, methods=["POST"]),
    ]
