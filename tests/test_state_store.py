from __future__ import annotations

import multiprocessing

from conveyor import StateStore


def test_set_get_list_delete_clear(tmp_path):
    store = StateStore(tmp_path / "s.db")
    assert store.get("orders", "missing") is None
    store.set("orders", "a", {"id": "a"})
    store.set("orders", "b", {"id": "b"})
    store.set("other", "a", 1)
    assert store.get("orders", "a") == {"id": "a"}
    assert store.list("orders") == [{"id": "a"}, {"id": "b"}]
    assert store.delete("orders", "a") == {"id": "a"}
    assert store.delete("orders", "a") is None
    assert store.clear("orders") == 1
    assert store.list("orders") == []
    assert store.get("other", "a") == 1


def test_update_returns_the_new_value_and_starts_from_empty(tmp_path):
    store = StateStore(tmp_path / "s.db")
    assert store.update("c", "k", [{"type": "increment", "path": "n"}]) == {"n": 1}
    assert store.update("c", "k", {"label": "x"}) == {"n": 1, "label": "x"}
    assert store.get("c", "k") == {"n": 1, "label": "x"}


def test_a_failed_update_changes_nothing(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.set("c", "k", {"n": "text"})
    try:
        store.update("c", "k", [{"type": "set", "path": "other", "value": 1}, {"type": "increment", "path": "n"}])
    except Exception:
        pass
    assert store.get("c", "k") == {"n": "text"}


def _increment_many(path: str, times: int) -> None:
    store = StateStore(path)
    for _ in range(times):
        store.update("counters", "shared", [{"type": "increment", "path": "n"}])


def test_concurrent_increments_from_many_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "s.db")
    StateStore(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment_many, args=(path, 250)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert StateStore(path).get("counters", "shared") == {"n": 6 * 250}


def test_transaction_is_all_or_nothing(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.set("stock", "p", {"n": 5})
    try:
        with store.transaction():
            store.update("stock", "p", [{"type": "decrement", "path": "n"}])
            assert store.get("stock", "p") == {"n": 4}  # the block sees its own writes
            raise RuntimeError("crash mid-way")
    except RuntimeError:
        pass
    assert store.get("stock", "p") == {"n": 5}


def _take_once(path: str, order: str) -> None:
    store = StateStore(path)
    with store.transaction():
        if store.get("applied", order):
            return
        store.update("stock", "p", [{"type": "decrement", "path": "n"}])
        store.set("applied", order, True)


def test_transaction_makes_an_effect_happen_once_across_processes(tmp_path):
    path = str(tmp_path / "s.db")
    StateStore(path).set("stock", "p", {"n": 100})
    context = multiprocessing.get_context("spawn")
    # Each order is "delivered" three times, by three processes at once.
    workers = [context.Process(target=_take_once, args=(path, f"o{i % 10}")) for i in range(30)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert StateStore(path).get("stock", "p") == {"n": 90}
