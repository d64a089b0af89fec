"""``Idempotency-Key`` on HTTP steps: a request repeated with the same key runs once.

The first POST, PUT or PATCH with a key claims it in the shared state store (group
:data:`GROUP`, so any gateway process on any host sees it) and runs the step; what it
enqueues is staged, not sent. Once the handler has answered, the answer and the staged
messages are written in one state transaction, and the messages go out right after its commit
(or from a sweep, if this process dies first): one key, one set of messages, whatever fails
around them. A repeat of the same request gets the stored answer with ``Idempotent-Replayed:
true``; the same key on another request is a 422; a repeat while the first is still running
waits for it a few seconds, then gets a 409 to retry.

An answer of 500 or more, or a handler that raises, releases the key (and sends nothing), so
the client's retry runs again. A claim whose gateway died holds the key for
``[gateway] idempotency_lease`` seconds; a repeat after that runs the request again.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import dramatiq
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from ..context import AnyContext
from ..declare.steps import Step
from ..errors import StateConflictError, StateUnavailableError
from ..messaging.publisher import MessagePublisher, PendingPublish, Publisher
from ..store import AsyncStateStore, StateStore
from .errors import json_error, state_unavailable
from .parsing import BadRequest

logger = logging.getLogger("conveyor.gateway")

#: The request header that carries the key, and the answer header that marks a replay.
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: The methods whose requests honour the header (the others are idempotent already, or read).
METHODS = frozenset({"POST", "PUT", "PATCH"})
#: The state group holding the keys (``<step name>:<key>``).
GROUP = "conveyor.idempotency-keys"
#: Seconds a repeat waits for the first request with its key before answering 409.
WAIT_FOR_FIRST = 5.0
#: Seconds between two looks at the store while waiting.
POLL_INTERVAL = 0.1

_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")

#: ``answer(publisher)``: run the step with a context publishing through ``publisher``, and answer.
Answer = Callable[[Publisher], Awaitable[Response]]


class StagedContexts(Protocol):
    """Makes the ``ctx`` of one keyed request, enqueueing through ``publisher``."""

    def __call__(self, step: Step, *, trace_id: str, publisher: Publisher) -> AnyContext: ...


class StagingPublisher:
    """A :class:`~conveyor.messaging.publisher.Publisher` that builds the messages and keeps them.

    ``enqueue`` returns at once with the ids the messages will have; :attr:`staged` holds
    ``(message, delay in ms)`` for the caller to stage with its transaction.
    """

    def __init__(self, builder: MessagePublisher) -> None:
        self.builder = builder
        self.staged: list[tuple[dramatiq.Message[Any], int | None]] = []

    def enqueue(
        self, topic: str, data: Any, *, trace_id: str, delay: float | None = None, priority: int | str | None = None
    ) -> PendingPublish:
        messages = self.builder.messages(topic, data, trace_id, priority)
        delay_ms = int(delay * 1000) if delay else None
        for message in messages:
            self.builder.tracer.staged(message, delay_ms)  # sent later, maybe by another process
        self.staged += [(message, delay_ms) for message in messages]
        done: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
        done.set_result([message.message_id for message in messages])
        return done


class IdempotencyKeys:
    """Runs keyed requests of HTTP steps once per key (see the module's docstring).

    Parameters:
      state: the shared store (its transactions record answers with their messages).
      async_state: the same store, awaited (claims and looks while waiting).
      publisher: builds the messages, and lends its threads for blocking state work.
      contexts: makes a request's ``ctx`` with the staging publisher.
      ttl: seconds a stored answer is kept (``[gateway] idempotency_ttl``).
      lease: seconds after which a running claim counts as dead (``[gateway] idempotency_lease``).
    """

    def __init__(
        self,
        state: StateStore,
        async_state: AsyncStateStore,
        publisher: MessagePublisher,
        contexts: StagedContexts,
        *,
        ttl: float,
        lease: float,
    ) -> None:
        self.state = state
        self.async_state = async_state
        self.publisher = publisher
        self.contexts = contexts
        self.ttl = ttl
        self.lease = lease

    @staticmethod
    def key_of(http_request: HTTPRequest) -> str | None:
        """The request's key, ``None`` without one, or :class:`BadRequest` (400) for a malformed one."""
        values = http_request.headers.getlist("idempotency-key")
        if not values:
            return None
        if len(values) == 1 and _VALID_KEY.fullmatch(values[0]):
            return values[0]
        reason = "send it once" if len(values) > 1 else "must be 1 to 255 printable ASCII characters"
        raise BadRequest(400, f"Invalid {HEADER} header: {reason}", fields=[{"field": HEADER, "reason": reason}])

    async def run(self, step: Step, key: str, http_request: HTTPRequest, answer: Answer) -> Response:
        """Answer a request carrying ``key``: run it (``answer``) if it is the first, else what the first answered."""
        name = f"{step.name}:{key}"
        fingerprint = _fingerprint(http_request, await http_request.body())
        claim = {"status": "running", "fingerprint": fingerprint, "owner": uuid.uuid4().hex, "since": time.time()}
        try:
            refused = await self._claim(name, claim)
        except (StateUnavailableError, StateConflictError) as exc:
            logger.error("Step %s: the %s could not be claimed: %s", step.name, HEADER, exc)
            return state_unavailable()
        if refused is not None:
            return refused
        return await self._first(step, name, claim, answer)

    # -- the steps of a request --------------------------------------------------------------

    async def _claim(self, name: str, claim: dict[str, Any]) -> Response | None:
        """``None`` once this request holds the key; else the answer for a repeat."""
        deadline = time.monotonic() + WAIT_FOR_FIRST
        while True:
            if await self.async_state.create(GROUP, name, claim, ttl=self.ttl):
                return None
            record = await self.async_state.get(GROUP, name)
            if record is not None:
                if record.get("fingerprint") != claim["fingerprint"]:
                    return json_error(
                        422,
                        f"This {HEADER} was already used for a different request (method, path, query or body); "
                        "send a new request with a new key",
                    )
                if record.get("status") == "done":
                    return _replay(record)
                if time.time() - float(record.get("since", 0)) > self.lease:
                    if await self.publisher.off_loop(functools.partial(self._take_over, name, record, claim)):
                        logger.warning("Took over %s %r: its first request stopped without an answer", HEADER, name)
                        return None
                    continue  # another repeat took it over first: look again
            if time.monotonic() >= deadline:
                response = json_error(
                    409, f"The first request with this {HEADER} is still in progress; retry it in a moment"
                )
                response.headers["Retry-After"] = "1"
                return response
            if record is not None:  # gone meanwhile (released, expired): claim it again at once
                await asyncio.sleep(POLL_INTERVAL)

    async def _first(self, step: Step, name: str, claim: dict[str, Any], answer: Answer) -> Response:
        staging = StagingPublisher(self.publisher)
        try:
            response = await answer(staging)
        except BaseException:
            await asyncio.shield(self._release(name, claim))
            raise
        body = getattr(response, "body", None)
        if response.status_code >= 500 or not isinstance(body, bytes):
            # The client is to retry: no trace of this attempt, nothing sent.
            await self._release(name, claim)
            if staging.staged:
                logger.warning(
                    "Step %s answered %d to a request with an %s: its %d message(s) are not sent",
                    step.name,
                    response.status_code,
                    HEADER,
                    len(staging.staged),
                )
            return response
        record = {"status": "done", "fingerprint": claim["fingerprint"], "answer": _stored(response, body)}
        try:
            current = await self.publisher.off_loop(lambda: self._commit(name, claim, record, staging.staged))
        except (StateUnavailableError, StateConflictError) as exc:
            logger.error("Step %s: the answer to an %s could not be stored: %s", step.name, HEADER, exc)
            await self._release(name, claim)
            return state_unavailable()
        except BaseException:
            await asyncio.shield(self._release(name, claim))
            raise
        if current is None:
            return response
        # Taken over by a repeat while this one ran past the lease: that one's answer stands.
        logger.warning(
            "Step %s: %s %r was taken over mid-request; this run's messages are dropped", step.name, HEADER, name
        )
        if current.get("status") == "done" and current.get("fingerprint") == claim["fingerprint"]:
            return _replay(current)
        return json_error(409, f"The request with this {HEADER} is being run again elsewhere; retry it in a moment")

    async def _release(self, name: str, claim: dict[str, Any]) -> None:
        try:
            await self.publisher.off_loop(lambda: self._release_now(name, claim))
        except Exception as exc:  # the claim then lapses after the lease
            logger.error("Could not release %s %r (it lapses in %ss): %s", HEADER, name, self.lease, exc)

    # -- state transactions, off the event loop ----------------------------------------------

    def _take_over(self, name: str, seen: dict[str, Any], claim: dict[str, Any]) -> bool:
        with self.state.transaction():
            if self.state.get(GROUP, name) != seen:
                return False
            claim["since"] = time.time()
            self.state.set(GROUP, name, claim, ttl=self.ttl)
            return True

    def _commit(
        self,
        name: str,
        claim: dict[str, Any],
        record: dict[str, Any],
        staged: list[tuple[dramatiq.Message[Any], int | None]],
    ) -> dict[str, Any] | None:
        """Store the answer and stage its messages in one transaction; ``None``, or the record that
        replaced this request's claim (nothing is then written)."""
        with self.state.transaction():
            current = self.state.get(GROUP, name)
            if not _owns(current, claim):
                return current or {}
            self.state.set(GROUP, name, record, ttl=self.ttl)
            for message, delay_ms in staged:
                self.state.stage_message(message.encode(), delay_ms=delay_ms)
        return None

    def _release_now(self, name: str, claim: dict[str, Any]) -> None:
        with self.state.transaction():
            if _owns(self.state.get(GROUP, name), claim):
                self.state.delete(GROUP, name)


def _owns(record: Any, claim: dict[str, Any]) -> bool:
    return isinstance(record, dict) and record.get("status") == "running" and record.get("owner") == claim["owner"]


def _fingerprint(http_request: HTTPRequest, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (http_request.method.encode(), http_request.url.path.encode(), http_request.scope["query_string"]):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _stored(response: Response, body: bytes) -> dict[str, Any]:
    headers = [
        [name.decode("latin-1"), value.decode("latin-1")]
        for name, value in response.raw_headers
        if name.lower() != b"content-length"
    ]
    stored: dict[str, Any] = {"status": response.status_code, "headers": headers}
    try:
        stored["body"] = body.decode("utf-8")
    except UnicodeDecodeError:
        stored["body_base64"] = base64.b64encode(body).decode()
    return stored


def _replay(record: dict[str, Any]) -> Response:
    answer = record["answer"]
    body = base64.b64decode(answer["body_base64"]) if "body_base64" in answer else answer["body"].encode()
    response = Response(body, status_code=int(answer["status"]))
    response.raw_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer["headers"]]
    response.raw_headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    return response
