"""Whole messages staged with a state transaction: committed or rolled back with it, published after
the commit, and swept once (by one of several sweepers) when the process that committed them died."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import dramatiq
import psycopg
import pytest

from conveyor import Context, Registry, open_store, queue, step
from conveyor.store import PendingMessage
from conveyor.store.async_state import AsyncStateStore
from conveyor.store.outbox import Outbox
from devtools.processes import ROOT
from tests.helpers import memory_runtime, payloads


def message(n: int, actor: str = "Mail") -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=actor, actor_name=actor, args=({"n": n},), kwargs={}, options={"trace_id": "t"})


class Published:
    """A ``resend`` that records what it was given, thread-safe."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, int | None]] = []
        self.lock = threading.Lock()

    def __call__(self, sent: dramatiq.Message[Any], delay_ms: int | None) -> None:
        with self.lock:
            self.sent.append((sent.message_id, sent.args[0], delay_ms))

    def ids(self) -> list[str]:
        return [message_id for message_id, _, _ in self.sent]


def outbox(store, resend) -> Outbox:
    box = Outbox(store, send=lambda *args: None, resend=resend)
    store.on_commit = box.after_commit
    return box


def test_staged_messages_commit_with_the_block_and_are_published_after_it(store):
    published = Published()
    outbox(store, published)
    first, second = message(1), message(2)
    with store.transaction():
        store.set("orders", "o-1", {"status": "new"})
        store.stage_message(first.encode())
        store.stage_message(second.encode().decode(), delay_ms=1500)  # str is fine too
        assert published.sent == []  # nothing leaves before the commit
    assert published.sent == [(first.message_id, {"n": 1}, None), (second.message_id, {"n": 2}, 1500)]
    assert store.pending_messages() == []  # confirmed: forgotten


def test_a_rolled_back_block_stages_nothing(store):
    published = Published()
    outbox(store, published)
    with pytest.raises(RuntimeError), store.transaction():
        store.set("orders", "o-1", {"status": "new"})
        store.stage_message(message(1).encode())
        raise RuntimeError("the handler failed")
    assert published.sent == [] and store.pending_messages() == []
    assert store.get("orders", "o-1") is None


def test_staging_outside_a_block_is_a_transaction_of_its_own(store):
    published = Published()
    outbox(store, published)
    staged = message(7)
    store.stage_message(staged.encode(), delay_ms=20)
    assert published.sent == [(staged.message_id, {"n": 7}, 20)]


def test_a_failed_publish_stays_for_the_sweep(store):
    from conveyor.errors import PublishError

    def refuse(sent: dramatiq.Message[Any], delay_ms: int | None) -> None:
        raise PublishError("not confirmed")

    outbox(store, refuse)
    staged = message(3)
    store.stage_message(staged.encode())
    (left,) = store.pending_messages()
    assert isinstance(left, PendingMessage) and dramatiq.Message.decode(left.encoded).message_id == staged.message_id
    assert store.pending_triggers() == []  # triggers and messages are told apart

    published = Published()
    assert outbox(store, published).sweep(older_than=0) == 1
    assert published.ids() == [staged.message_id] and store.pending_messages() == []


def test_a_message_that_is_not_one_is_refused_at_once(store):
    with pytest.raises(Exception):  # noqa: B017 - Dramatiq's DecodeError, or JSON's
        store.stage_message(b"not a message")
    assert store.pending_messages() == []


def test_rows_a_dead_publisher_left_are_swept_once_by_one_of_two_sweepers(where):
    writer = open_store(where)
    staged = [message(n) for n in range(60)]
    for chunk in range(0, 60, 20):
        with writer.transaction():  # as if the writer died after each commit: no on_commit
            for sent in staged[chunk : chunk + 20]:
                writer.stage_message(sent.encode())
    writer.close()
    time.sleep(1.1)  # the writer's own claims (made as it staged them) lapse

    published = Published()
    sweepers = [open_store(where) for _ in range(2)]
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda s=s: counts.append(Outbox(s, lambda *a: None, published).sweep(1.0)))
        for s in sweepers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(f"sweepers published {counts} of {len(staged)}")
    assert sorted(published.ids()) == sorted(m.message_id for m in staged)  # each exactly once
    assert sum(counts) == len(staged)
    assert sweepers[0].pending_messages() == []
    for sweeper in sweepers:
        sweeper.close()


def test_a_process_that_dies_between_commit_and_publish_leaves_its_messages_to_a_sweep(where):
    staged = message(9)
    script = (
        "import sys\nfrom conveyor import open_store\n"
        "store = open_store(sys.argv[1])\n"
        "store.on_commit = lambda pending: print('published', flush=True)\n"
        "with store.transaction():\n"
        "    store.set('orders', 'o-9', {'status': 'new'})\n"
        "    store.stage_message(sys.argv[2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, where, staged.encode().decode()],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_FAULT_EXIT_AFTER_COMMIT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "published" not in done.stdout, done.stderr
    with open_store(where) as store:
        assert store.get("orders", "o-9") == {"status": "new"}  # the commit happened
        published = Published()
        assert Outbox(store, lambda *a: None, published).sweep(older_than=0) == 1
        assert Outbox(store, lambda *a: None, published).sweep(older_than=0) == 0
        assert published.ids() == [staged.message_id]


def test_the_async_api_stages_with_its_block(store):
    published = Published()
    outbox(store, published)
    states = AsyncStateStore(store, threads=2)
    staged = message(5)

    async def handler() -> None:
        async with states.transaction():
            await states.set("orders", "o-5", {"status": "new"})
            await states.stage_message(staged.encode())
            assert published.sent == []
        await states.stage_message(message(6).encode())

    asyncio.run(handler())
    states.close()
    assert [n for _, n, _ in published.sent] == [{"n": 5}, {"n": 6}]


def test_the_runtime_publishes_staged_messages_to_their_step(tmp_path):
    registry = Registry()

    @step(name="Mail", triggers=[queue("mail")], registry=registry)
    def mail(data: Any, ctx: Context) -> None:
        pass

    runtime = memory_runtime(tmp_path, registry)
    built = runtime.publisher.message("Mail", {"to": "a@example.com"})
    with runtime.state.transaction():
        runtime.state.set("orders", "o-1", {"status": "new"})
        runtime.state.stage_message(built.encode())
    assert payloads(runtime, "Mail") == [{"to": "a@example.com"}]
    assert runtime.state.pending_messages() == []


# -- stores an older Conveyor made ---------------------------------------------------------------

OLD_OUTBOX = (
    "CREATE TABLE outbox (id {id}, step TEXT NOT NULL, payload TEXT NOT NULL, trace_id TEXT, "
    "created_at {real} NOT NULL, claimed_at {real} NOT NULL DEFAULT 0)"
)


def test_an_older_sqlite_file_gains_the_outbox_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(OLD_OUTBOX.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL"))
        db.execute("INSERT INTO outbox (step, payload, created_at) VALUES ('Audit', '{}', 1)")
    with open_store(path) as store:
        assert [t.step for t in store.pending_triggers()] == ["Audit"]  # the old row still reads
        store.stage_message(message(1).encode())
        assert len(store.pending_messages()) == 1


def test_an_older_postgresql_database_gains_the_outbox_columns(postgres):
    with psycopg.connect(postgres.url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS outbox")
        db.execute("DROP TABLE IF EXISTS conveyor_schema")  # an older Conveyor kept no schema version
        db.execute(OLD_OUTBOX.format(id="bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="double precision"))
    try:
        with open_store(postgres.url) as store:
            store.stage_message(message(1).encode())
            assert len(store.pending_messages()) == 1
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as db:
            db.execute("DROP TABLE outbox")
            db.execute("DROP TABLE conveyor_schema")
        with open_store(postgres.url) as fresh:
            fresh.check()  # type: ignore[attr-defined]  # makes it afresh, for the tests after this one


def test_a_process_starting_on_a_current_database_waits_for_no_running_transaction(postgres):
    """Starting takes no lock on a live table: a transaction left open (a frozen scheduler's
    claim, a long handler) must not hold up, or deadlock with, the next process's start."""
    with open_store(postgres.url) as first:
        first.check()  # type: ignore[attr-defined]  # the schema exists and is current
    with psycopg.connect(postgres.url) as holder:
        holder.execute("INSERT INTO outbox (step, payload, created_at) VALUES ('Held', 'null', 1)")  # left open
        with psycopg.connect(postgres.url, autocommit=True) as db:
            db.execute("ALTER DATABASE conveyor SET lock_timeout = '5s'")  # a wait fails, not hangs
        try:
            with open_store(postgres.url) as second:
                second.check()  # type: ignore[attr-defined]
                assert second.get("g", "k") is None
        finally:
            with psycopg.connect(postgres.url, autocommit=True) as db:
                db.execute("ALTER DATABASE conveyor RESET lock_timeout")
        holder.rollback()
