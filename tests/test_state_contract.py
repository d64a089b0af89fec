"""The state store's contract, run against both backends (SQLite and a real PostgreSQL server), so they cannot drift."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from conveyor import StateConflictError, StateKeyError, StateOpError, StateValueError, open_store
from conveyor.store import MAX_NAME_LENGTH

# -- the operations -------------------------------------------------------------------------------


def test_set_get_items_delete_clear(store):
    assert store.get("g", "missing") is None
    assert store.set("g", "a", {"n": 1}) == {"n": 1}
    store.set("g", "b", [1, "two", None, 3.5, True])
    store.set("other", "a", "x")
    store.update("g", "a", [{"type": "increment", "path": "n"}])  # an update keeps a key's place
    assert store.items("g") == [("a", {"n": 2}), ("b", [1, "two", None, 3.5, True])]
    assert store.list("g") == [{"n": 2}, [1, "two", None, 3.5, True]]
    assert store.groups() == [("g", 2), ("other", 1)]
    assert store.delete("g", "a") == {"n": 2}
    assert store.delete("g", "a") is None
    assert store.clear("g") == 1
    assert store.list("g") == [] and store.get("other", "a") == "x"


def test_update_applies_every_op_and_starts_from_empty(store):
    assert store.update("c", "k", [{"type": "increment", "path": "n", "by": 5}]) == {"n": 5}
    value = store.update(
        "c",
        "k",
        [
            {"type": "decrement", "path": "n", "by": 9, "min": 0},
            {"type": "set", "path": "a.b", "value": "deep"},
            {"type": "merge", "value": {"m": 1}},
            {"type": "remove", "path": "m"},
        ],
    )
    assert value == {"n": 0, "a": {"b": "deep"}}
    assert store.update("c", "k", {"plain": "dict merges"}) == {"n": 0, "a": {"b": "deep"}, "plain": "dict merges"}
    assert store.get("c", "k") == value | {"plain": "dict merges"}


def test_a_failed_update_changes_nothing(store):
    store.set("c", "k", {"n": "text"})
    with pytest.raises(StateOpError):
        store.update("c", "k", [{"type": "increment", "path": "n"}])
    assert store.get("c", "k") == {"n": "text"}


def test_a_transaction_is_all_or_nothing_and_sees_its_own_writes(store):
    store.set("stock", "p", {"n": 5})
    with pytest.raises(RuntimeError), store.transaction():
        store.update("stock", "p", [{"type": "decrement", "path": "n"}])
        store.set("applied", "o-1", True)
        with store.transaction():  # a nested block joins the outer one
            assert store.get("stock", "p") == {"n": 4}
            assert store.items("applied") == [("o-1", True)]
        raise RuntimeError("crash mid-way")
    assert store.get("stock", "p") == {"n": 5}
    assert store.get("applied", "o-1") is None


def test_create_stores_only_where_nothing_is(store):
    assert store.create("marks", "o-1", {"by": "first"}) is True
    assert store.create("marks", "o-1", {"by": "second"}) is False
    assert store.get("marks", "o-1") == {"by": "first"}
    store.set("marks", "short", 1, ttl=0.05)
    time.sleep(0.1)
    assert store.create("marks", "short", 2) is True  # an expired key holds nothing
    assert store.items("marks") == [("o-1", {"by": "first"}), ("short", 2)]
    store.watchers = {"marks": [("Audit", lambda old, new: True)]}
    store.on_commit = lambda pending: None
    assert store.create("marks", "o-2", 3) is True and store.create("marks", "o-2", 4) is False
    assert [t.change["event"] for t in store.pending_triggers()] == ["created"]


def test_of_many_threads_creating_one_key_exactly_one_wins(store):
    wins: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(12, timeout=10)

    def race(n: int) -> None:
        start.wait()
        won = store.create("marks", "contested", {"by": n})
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(wins) == [False] * 11 + [True]


# -- concurrency ----------------------------------------------------------------------------------


def _increment_many(where: str, times: int) -> None:
    with open_store(where) as store:
        for _ in range(times):
            store.update("counters", "shared", [{"type": "increment", "path": "n"}])


def _run_processes(target, args_list: list[tuple]) -> None:
    # Forked, so that a test starts dozens in well under a second; each opens its own store after the fork.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=args) for args in args_list]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0


def test_concurrent_increments_from_many_processes_lose_nothing(where):
    open_store(where).close()
    _run_processes(_increment_many, [(where, 200)] * 6)
    with open_store(where) as store:
        assert store.get("counters", "shared") == {"n": 6 * 200}


def test_first_writes_of_a_missing_key_from_many_threads_lose_nothing(store):
    """Read-then-write in a transaction, on a key no row holds yet: nothing may read "missing" twice."""

    def add_one() -> None:
        with store.transaction():
            current = store.get("counters", "fresh")
            store.set("counters", "fresh", {"n": (current or {"n": 0})["n"] + 1})

    threads = [threading.Thread(target=add_one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.get("counters", "fresh") == {"n": 16}


def _take_once(where: str, order: str) -> None:
    with open_store(where) as store, store.transaction():
        if store.get("applied", order):
            return
        store.update("stock", "p", [{"type": "decrement", "path": "n"}])
        store.set("applied", order, True)


def test_a_transaction_makes_an_effect_happen_once_across_processes(where):
    with open_store(where) as store:
        store.set("stock", "p", {"n": 100})
    # Each order is "delivered" three times, by three processes at once.
    _run_processes(_take_once, [(where, f"o{i % 10}") for i in range(30)])
    with open_store(where) as store:
        assert store.get("stock", "p") == {"n": 90}


def test_blocks_crossing_keys_never_leave_half_a_change(store):
    """Two blocks taking two keys in opposite orders: PostgreSQL aborts one (a deadlock), SQLite runs them in turn."""
    store.set("acct", "a", {"n": 100})
    store.set("acct", "b", {"n": 100})
    outcomes: list[str] = []
    both_read = threading.Barrier(2, timeout=0.5)

    def move(source: str, target: str) -> None:
        try:
            with store.transaction():
                store.update("acct", source, [{"type": "decrement", "path": "n", "by": 10}])
                try:
                    both_read.wait()
                except threading.BrokenBarrierError:
                    pass  # SQLite: the other block waits for this one to finish
                store.update("acct", target, [{"type": "increment", "path": "n", "by": 10}])
            outcomes.append("committed")
        except StateConflictError:
            outcomes.append("deadlock")

    threads = [threading.Thread(target=move, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert "committed" in outcomes and len(outcomes) == 2
    total = store.get("acct", "a")["n"] + store.get("acct", "b")["n"]
    assert total == 200  # money neither made nor lost, whichever way it went


def _open_and_write(where: str, start: float, name: str) -> None:
    while time.time() < start:
        time.sleep(0.001)
    with open_store(where) as store:
        store.set("boot", name, True)


def test_many_processes_opening_a_new_store_at_once_all_start(tmp_path, where):
    """Ten rounds of eight processes making the same new store at the same instant (a fleet's first start)."""
    for round_number in range(10):
        if where.startswith("postgresql"):
            target = where.rsplit("/", 1)[0] + f"/fresh{round_number}"
            with psycopg.connect(where, autocommit=True) as db:
                db.execute(f"DROP DATABASE IF EXISTS fresh{round_number}")
                db.execute(f"CREATE DATABASE fresh{round_number}")
        else:
            target = str(tmp_path / f"fresh-{round_number}" / "state.db")
        start = time.time() + 0.2
        _run_processes(_open_and_write, [(target, start, f"{i}") for i in range(8)])
        with open_store(target) as store:
            assert len(store.items("boot")) == 8


# -- time to live ---------------------------------------------------------------------------------


def test_a_key_with_a_time_to_live_reads_as_missing_once_it_passes(store):
    store.set("marks", "short", {"v": 1}, ttl=0.3)
    store.set("marks", "long", {"v": 2}, ttl=timedelta(hours=1))
    store.set("marks", "forever", {"v": 3})
    store.update("marks", "long", [{"type": "increment", "path": "v"}])  # keeps its time to live
    assert store.get("marks", "short") == {"v": 1}
    time.sleep(0.4)
    assert store.get("marks", "short") is None
    assert store.items("marks") == [("long", {"v": 3}), ("forever", {"v": 3})]
    assert store.update("marks", "short", [{"type": "increment", "path": "v"}]) == {"v": 1}  # starts afresh
    store.set("marks", "gone", 1, ttl=0.01)
    store.update("marks", "long", [{"type": "increment", "path": "v"}], ttl=0.01)
    time.sleep(0.05)
    assert store.remove_expired() == 2
    assert store.items("marks") == [("forever", {"v": 3}), ("short", {"v": 1})]


def test_a_time_to_live_must_be_positive(store):
    with pytest.raises(ValueError, match="ttl"):
        store.set("marks", "k", 1, ttl=0)


# -- what the store refuses, the same on both backends --------------------------------------------


def test_names_that_cannot_be_stored_are_refused_naming_group_and_key(store):
    with pytest.raises(StateKeyError, match="group must not be empty"):
        store.set("", "k", 1)
    with pytest.raises(StateKeyError, match=f"limit is {MAX_NAME_LENGTH}"):
        store.set("g", "k" * (MAX_NAME_LENGTH + 1), 1)
    with pytest.raises(StateKeyError, match="NUL"):
        store.get("g", "a\x00b")
    store.set("g", "k" * MAX_NAME_LENGTH, 1)
    assert store.get("g", "k" * MAX_NAME_LENGTH) == 1


def test_a_value_json_cannot_hold_is_refused_naming_group_and_key(store):
    with pytest.raises(StateValueError, match="'orders' key 'o-1'.*model_dump"):
        store.set("orders", "o-1", {"at": object()})
    with pytest.raises(StateValueError, match="'orders' key 'o-2'"):
        store.set("orders", "o-2", {"n": float("nan")})
    assert store.items("orders") == []


def test_any_json_string_round_trips_a_nul_included(store):
    value = {"text": "before\x00after", "emoji": "\U0001f600", "quote": "'\"", "ctrl": "\x01\x1f"}
    store.set("g", "k", value)
    assert store.get("g", "k") == value
    assert store.update("g", "k", [{"type": "set", "path": "more", "value": "\x00"}])["more"] == "\x00"


# -- the outbox -----------------------------------------------------------------------------------


def test_a_watched_write_records_its_trigger_with_the_write_and_only_if_it_commits(store):
    store.watchers = {"orders": [("Audit", lambda old, new: True)]}
    committed: list = []
    store.on_commit = committed.extend
    store.set("orders", "o-1", {"status": "new"})
    assert [t.change["event"] for t in committed] == ["created"]
    with pytest.raises(RuntimeError), store.transaction():
        store.update("orders", "o-1", {"status": "paid"})
        raise RuntimeError("rolled back")
    assert len(committed) == 1 and len(store.pending_triggers()) == 1


def test_concurrent_sweeps_never_claim_a_trigger_twice(store):
    store.watchers = {"orders": [("Audit", lambda old, new: True)]}
    for i in range(200):
        store.set("orders", f"o-{i}", {"i": i})
    time.sleep(2.1)  # the writer's own claims (made at the write) lapse
    claimed: list[int] = []
    lock = threading.Lock()

    def sweep() -> None:
        while batch := store.claim_outbox(lease=2.0, limit=7):
            with lock:
                claimed.extend(t.id for t in batch)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(claimed) == sorted({t.id for t in store.pending_triggers()})  # each exactly once
    store.outbox_published(claimed)
    assert store.pending_triggers() == []
