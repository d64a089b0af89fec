"""State triggers: recorded with the write (outbox), published after commit, swept after a crash."""

from __future__ import annotations

import pytest

from conveyor import Context, Registry, StateChange, state, step
from tests.helpers import drain, memory_runtime, payloads, running_worker


@pytest.fixture
def watched(tmp_path):
    registry = Registry()
    seen: list[StateChange] = []

    @step(name="OnDone", triggers=[state("jobs", filter={"status": "done"})], registry=registry)
    def on_done(change: StateChange, ctx: Context) -> None:
        seen.append(change)

    @step(
        name="OnBig",
        triggers=[state("jobs", condition=lambda change, ctx: (change.value or {}).get("size", 0) > 10)],
        registry=registry,
    )
    def on_big(change: StateChange, ctx: Context) -> None:
        seen.append(change)

    return memory_runtime(tmp_path, registry), seen


def test_created_updated_deleted_events_reach_matching_steps(watched):
    runtime, seen = watched
    runtime.state.set("jobs", "a", {"status": "new"})
    runtime.state.update("jobs", "a", {"status": "done"})
    runtime.state.delete("jobs", "a")
    runtime.state.set("other-group", "a", {"status": "done"})
    with running_worker(runtime):
        drain(runtime, "OnDone", "OnBig")
    done_events = [(c.event, c.old_value, c.value) for c in seen if c.group == "jobs"]
    assert ("updated", {"status": "new"}, {"status": "done"}) in done_events
    assert ("deleted", {"status": "done"}, None) in done_events
    assert all(c.key == "a" for c in seen)
    assert runtime.state.pending_triggers() == []


def test_condition_runs_on_the_worker_and_skips_quietly(watched):
    runtime, seen = watched
    runtime.state.set("jobs", "small", {"size": 1})
    runtime.state.set("jobs", "large", {"size": 50})
    with running_worker(runtime):
        drain(runtime, "OnDone", "OnBig")
    assert [c.key for c in seen] == ["large"]
    assert runtime.state.get("conveyor.skipped", "OnBig") == {"count": 1}


def test_unchanged_value_fires_nothing(watched):
    runtime, _ = watched
    runtime.state.set("jobs", "a", {"status": "done"})
    before = len(payloads(runtime, "OnDone"))
    runtime.state.set("jobs", "a", {"status": "done"})
    assert len(payloads(runtime, "OnDone")) == before


def test_triggers_a_crash_left_in_the_outbox_are_swept(watched):
    runtime, _ = watched
    runtime.state.on_commit = None  # as if the writer died right after its commit
    runtime.state.set("jobs", "x", {"status": "done"})
    assert payloads(runtime, "OnDone") == []
    assert sorted(p.step for p in runtime.state.pending_triggers()) == ["OnBig", "OnDone"]

    assert runtime.outbox.sweep(older_than=0) == 2  # OnDone, and OnBig (its condition runs later)
    assert payloads(runtime, "OnDone")[0]["key"] == "x"
    assert runtime.state.pending_triggers() == []


def test_a_failed_write_records_no_trigger(watched):
    runtime, _ = watched
    runtime.state.set("jobs", "n", {"status": "done", "count": "text"})
    queued = len(payloads(runtime, "OnDone"))
    with pytest.raises(Exception, match="must be a number"):
        runtime.state.update("jobs", "n", [{"type": "increment", "path": "count"}])
    assert len(payloads(runtime, "OnDone")) == queued
    assert runtime.state.pending_triggers() == []


def test_a_becomes_trigger_fires_on_the_transition_only(tmp_path):
    registry = Registry()
    seen: list[StateChange] = []

    @step(name="AuditActivation", triggers=[state("accounts", becomes={"status": "active"})], registry=registry)
    def audit(change: StateChange, ctx: Context) -> None:
        seen.append(change)

    runtime = memory_runtime(tmp_path, registry)
    runtime.state.set("accounts", "a", {"status": "pending", "email": "a@example.com"})
    runtime.state.update("accounts", "a", {"status": "active"})  # becomes active: fires
    runtime.state.update("accounts", "a", {"email": "new@example.com"})  # still active: nothing
    runtime.state.update("accounts", "a", {"status": "suspended"})
    runtime.state.update("accounts", "a", {"status": "active"})  # active anew: fires
    runtime.state.set("accounts", "b", {"status": "active"})  # created active: fires
    runtime.state.delete("accounts", "b")  # a deletion is no transition to active
    with running_worker(runtime):
        drain(runtime, "AuditActivation")
    fired = sorted((c.key, str((c.old_value or {}).get("status"))) for c in seen)
    assert fired == [("a", "pending"), ("a", "suspended"), ("b", "None")]


def test_filter_and_becomes_combine():
    trigger = state("accounts", filter={"plan": "pro"}, becomes={"status": "active"})
    assert trigger.fires({"plan": "pro", "status": "new"}, {"plan": "pro", "status": "active"})
    assert not trigger.fires({"plan": "free", "status": "new"}, {"plan": "free", "status": "active"})
    assert not trigger.fires({"plan": "pro", "status": "active"}, {"plan": "pro", "status": "active", "x": 1})
    # Without becomes, a filter fires on every matching write, the deletion of a match included.
    plain = state("accounts", filter={"status": "active"})
    assert plain.fires({"status": "active"}, {"status": "active", "x": 1})
    assert plain.fires({"status": "active"}, None)
