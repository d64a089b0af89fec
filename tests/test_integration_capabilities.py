"""Priorities, per-step concurrency, state triggers and delays on real RabbitMQ and workers."""

from __future__ import annotations

import time
import uuid

from devtools.processes import wait_for
from tests.system import System


def enqueue(system, topic: str, data, **envelope) -> list[str]:
    response = system.http.post(f"/_test/enqueue/{topic}", json={"data": data, **envelope})
    assert response.status_code == 202, response.text
    return response.json()["messageIds"]


def test_high_priority_messages_overtake_a_low_priority_backlog(rabbitmq, tmp_path):
    system = System(tmp_path, rabbitmq.url)
    try:
        system.start_gateway()  # no workers yet: let a backlog build up
        run = uuid.uuid4().hex
        enqueue(system, "test.ordered", {"id": run, "kind": "low"}, repeat=500, priority="low")
        enqueue(system, "test.ordered", {"id": run, "kind": "high"}, repeat=20, priority="high")
        system.start_workers(processes=1, threads=2)
        wait_for(lambda: len(system.state.list(f"ordered-{run}")) == 520, timeout=60)
        positions = dict(system.state.items(f"ordered-{run}"))
        high = sorted(positions[f"high-{n}"] for n in range(20))
        print(f"\nhigh-priority positions among 520: {high}")
        assert max(high) <= 250, high  # every high message before half of the low backlog
    finally:
        system.stop_all()


def test_concurrency_caps_a_step_without_starving_others(system):
    run = uuid.uuid4().hex
    enqueue(system, "test.limited", {"id": run, "sleep": 0.4}, repeat=6)
    time.sleep(0.3)  # the limited step's messages are now running or waiting
    quick = uuid.uuid4().hex
    enqueue(system, "test.quick", {"id": quick})
    quick_done = wait_for(lambda: system.state.get("quick", quick), timeout=10)
    limited = wait_for(lambda: (v := system.state.get("limited", run)) and v.get("done") == 6 and v, timeout=30)
    assert limited["seen"] == 2  # concurrency = 2: never more, and it did run two at once
    assert quick_done["at"] < time.time()  # ran while the limited step still had a queue
    assert system.state.get("limited", run)["done"] == 6


def test_state_change_triggers_a_step_through_rabbitmq(system):
    key = uuid.uuid4().hex
    system.http.put(f"/_test/state/watched/{key}", json={"data": {"status": "pending"}})
    response = system.http.put(f"/_test/state/watched/{key}", json={"data": {"status": "done", "n": 1}})
    trace_id = response.json()["traceId"]
    updated = wait_for(lambda: system.state.get("watch-log", f"{key}-updated"))
    assert updated["old_value"] == {"status": "pending"}
    assert updated["value"] == {"status": "done", "n": 1}
    assert updated["group"] == "watched"
    assert updated["trace"] == trace_id  # the trigger carries the writer's trace
    assert system.state.get("watch-log", f"{key}-created") is None  # filter: status must be done

    system.http.put(f"/_test/state/watched/{key}", json={"data": None})
    deleted = wait_for(lambda: system.state.get("watch-log", f"{key}-deleted"))
    assert deleted["value"] is None
    assert deleted["old_value"] == {"status": "done", "n": 1}


def test_delayed_message_runs_no_sooner_than_its_delay(system):
    key = uuid.uuid4().hex
    sent = time.time()
    enqueue(system, "test.quick", {"id": key}, delay=1.5)
    done = wait_for(lambda: system.state.get("quick", key), timeout=15)
    assert done["at"] - sent >= 1.5
    assert done["at"] - sent < 6
