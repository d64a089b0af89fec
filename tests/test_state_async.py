"""The async state API on both backends: the same calls awaited, and an event loop that never waits for a lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import psycopg
import pytest

from conveyor.store import AsyncStateStore, SqliteStateStore
from conveyor.store.transactions import WouldWait

# -- the async API --------------------------------------------------------------------------------


def test_the_async_api_does_what_the_sync_one_does(store):
    async def scenario() -> None:
        state = AsyncStateStore(store)
        await state.set("g", "a", {"n": 1}, ttl=60)
        assert await state.create("g", "a", {"n": 0}) is False
        assert await state.update("g", "a", [{"type": "increment", "path": "n"}]) == {"n": 2}
        async with state.transaction():
            assert await state.get("g", "a") == {"n": 2}
            await state.set("g", "b", True)
        with pytest.raises(KeyError):
            async with state.transaction():
                await state.delete("g", "a")
                raise KeyError("rolled back")
        assert await state.items("g") == [("a", {"n": 2}), ("b", True)]
        assert await state.clear("g") == 2
        state.close()

    asyncio.run(scenario())


def test_concurrent_async_transactions_on_one_key_lose_nothing(store):
    async def scenario() -> None:
        state = AsyncStateStore(store, threads=4)

        async def add_one() -> None:
            async with state.transaction():
                current = await state.get("counters", "async")
                await asyncio.sleep(0)  # let the other tasks run inside their blocks
                await state.set("counters", "async", (current or 0) + 1)

        await asyncio.wait_for(asyncio.gather(*(add_one() for _ in range(20))), 60)
        assert await state.get("counters", "async") == 20
        state.close()

    asyncio.run(scenario())


def test_an_awaited_call_waiting_on_a_lock_leaves_the_event_loop_free(store, where):
    """Another process holds the write lock for 0.5 s: the loop keeps ticking while the write waits."""
    store.set("g", "k", 0)
    release = threading.Event()
    held = threading.Event()

    def hold_the_lock() -> None:
        if where.startswith("postgresql"):
            with psycopg.connect(where) as db:
                db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("g\x1fk",))
                held.set()
                release.wait(10)
        else:
            db = sqlite3.connect(where, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(10)
            db.execute("COMMIT")
            db.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert held.wait(10)

    async def scenario() -> int:
        state = AsyncStateStore(store)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        asyncio.get_running_loop().call_later(0.5, release.set)
        await state.set("g", "k", 1)  # waits until the holder lets go
        ticking.cancel()
        state.close()
        return ticks

    ticks = asyncio.run(scenario())
    holder.join(10)
    assert store.get("g", "k") == 1
    # About 100 ticks if nothing blocks the loop; none while the write waits if something does.
    assert ticks >= 20, f"the loop ticked {ticks} times in 0.5 s: the waiting write blocked it"


def test_sqlite_calls_made_at_once_never_wait_and_change_nothing_when_they_would(tmp_path):
    """What the async API tries on the event loop first: a write that would wait for the file gives up at once."""
    store = SqliteStateStore(tmp_path / "state.db")
    store.set("g", "k", {"n": 1})
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with store.at_once():
        assert store.get("g", "k") == {"n": 1}  # readers never wait under WAL
        for attempt in (
            lambda: store.set("g", "k", {"n": 2}),
            lambda: store.update("g", "k", [{"type": "increment", "path": "n"}]),
            lambda: store.delete("g", "k"),
        ):
            with pytest.raises(WouldWait):
                attempt()
    assert time.monotonic() - started < 1  # and gave up without sleeping in between
    holder.execute("COMMIT")
    holder.close()
    with store.at_once():
        assert store.update("g", "k", [{"type": "increment", "path": "n"}]) == {"n": 2}
    assert store.get("g", "k") == {"n": 2}
    store.checkpoint()
