"""The state calls of an ``async def`` handler: the same operations, awaited, never blocking the loop.

A call that can finish without waiting runs at once (SQLite: the write lock is free, and a
statement takes tens of microseconds); any other runs on the store's own threads, and the
event loop only awaits it. PostgreSQL calls always go to the threads. A transaction
holds its connection across the awaits of its block, and every call of the block (in this
task, or in tasks it starts) joins it::

    async with ctx.state.transaction():
        if await ctx.state.get("applied", order_id) is None:
            await ctx.state.update("inventory", product_id, [{"type": "decrement", "path": "stock"}])
            await ctx.state.set("applied", order_id, True, ttl=timedelta(days=14))
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextvars
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from .base import StateStore
from .ops import Ops
from .transactions import Transaction, WouldWait, current_transaction
from .values import TTL

T = TypeVar("T")

#: Calls made at once between two checkpoints of the SQLite file (which those calls skip).
CHECKPOINT_EVERY = 500


class AsyncStateStore:
    """:class:`~conveyor.store.StateStore`'s API as coroutines (``ctx.state`` in ``async def`` handlers).

    Parameters:
      store: the store the calls go to.
      threads: how many calls may run at once (each holds a connection while it runs).
    """

    def __init__(self, store: StateStore, *, threads: int = 8) -> None:
        self.store = store
        self.threads = threads
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._guard = threading.Lock()
        self._written_at_once = 0

    async def get(self, group: str, key: str) -> Any | None:
        """The value at ``group``/``key``, or ``None``."""
        return await self._call(self.store.get, group, key)

    async def set(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> Any:
        """Store ``value`` at ``group``/``key``; ``ttl`` (seconds or a timedelta) makes it expire."""
        return await self._call(functools.partial(self.store.set, ttl=ttl), group, key, value)

    async def update(self, group: str, key: str, ops: Ops, *, ttl: TTL | None = None) -> Any:
        """Apply Motia's ops atomically and return the new value (see :meth:`StateStore.update`)."""
        return await self._call(functools.partial(self.store.update, ttl=ttl), group, key, ops)

    async def create(self, group: str, key: str, value: Any, *, ttl: TTL | None = None) -> bool:
        """Store ``value`` only if ``group``/``key`` holds nothing; ``True`` if it was stored."""
        return await self._call(functools.partial(self.store.create, ttl=ttl), group, key, value)

    async def delete(self, group: str, key: str) -> Any | None:
        """Remove ``group``/``key``; returns the value it held, or ``None``."""
        return await self._call(self.store.delete, group, key)

    async def list(self, group: str) -> builtins.list[Any]:
        """Every value in ``group``, oldest key first."""
        return await self._call(self.store.list, group)

    async def items(self, group: str) -> builtins.list[tuple[str, Any]]:
        """Every ``(key, value)`` in ``group``, oldest key first."""
        return await self._call(self.store.items, group)

    async def clear(self, group: str) -> int:
        """Remove every value in ``group``; returns how many there were."""
        return await self._call(self.store.clear, group)

    async def stage_message(self, encoded: bytes | str, *, delay_ms: int | None = None) -> None:
        """Stage a whole Dramatiq message, published once the transaction commits (see
        :meth:`StateStore.stage_message`)."""
        await self._call(functools.partial(self.store.stage_message, delay_ms=delay_ms), encoded)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """``async with ctx.state.transaction():`` makes the block's state calls one isolated change.

        The same guarantees as :meth:`StateStore.transaction`. Keep the block short, and
        await only state calls inside it: other writers of its keys wait for it.
        """
        joined = current_transaction.get()
        if joined is not None and joined.store is self.store:
            yield
            return
        # The block's calls get a thread of their own: on the shared threads they could queue
        # behind calls that wait for this very transaction's locks.
        runner = concurrent.futures.ThreadPoolExecutor(1, "conveyor-state-transaction")
        loop = asyncio.get_running_loop()
        try:
            tx: Transaction = await loop.run_in_executor(runner, self.store.begin)
            tx.runner = runner
            token = current_transaction.set(tx)
            try:
                yield
            except BaseException:
                current_transaction.reset(token)
                rollback = functools.partial(self.store.finish, tx, commit=False)
                await asyncio.shield(loop.run_in_executor(runner, rollback))
                raise
            current_transaction.reset(token)
            commit = functools.partial(self.store.finish, tx, commit=True)
            await asyncio.shield(loop.run_in_executor(runner, commit))
        finally:
            runner.shutdown(wait=False)

    async def ping(self) -> None:
        """Raise if the store cannot be read."""
        await self._run(self.store.ping)

    async def _call(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` at once if it need not wait, else on the store's threads."""
        at_once = getattr(self.store, "at_once", None)
        if at_once is not None and current_transaction.get() is None:
            try:
                with at_once():
                    result = call(*args)
            except WouldWait:
                pass
            else:
                self._written_at_once += 1
                if self._written_at_once % CHECKPOINT_EVERY == 0:
                    self._pool().submit(self.store.checkpoint)  # type: ignore[attr-defined]
                return result
        return await self._run(call, *args)

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        # The copied context carries the open transaction (and the trace id) into the thread.
        context = contextvars.copy_context()
        tx = current_transaction.get()
        runner = tx.runner if tx is not None and tx.store is self.store and tx.runner is not None else self._pool()
        return await asyncio.get_running_loop().run_in_executor(runner, context.run, call, *args)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None or self._executor_pid != os.getpid():
            with self._guard:
                if self._executor is None or self._executor_pid != os.getpid():
                    self._executor = concurrent.futures.ThreadPoolExecutor(self.threads, "conveyor-state")
                    self._executor_pid = os.getpid()
        return self._executor

    def close(self) -> None:
        """Stop the threads (waiting for calls under way)."""
        if self._executor is not None and self._executor_pid == os.getpid():
            self._executor.shutdown(wait=True)
        self._executor = None
