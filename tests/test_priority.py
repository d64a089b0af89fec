from __future__ import annotations

import dramatiq
import pytest

from conveyor import ConfigError, ConveyorError, Registry, queue, step
from conveyor.messaging.priorities import resolve_priority
from tests.helpers import memory_runtime


def test_names_map_onto_the_configured_range():
    assert [resolve_priority(name, 10) for name in ("low", "normal", "high")] == [1, 5, 10]
    assert [resolve_priority(name, 2) for name in ("low", "normal", "high")] == [0, 1, 2]
    assert resolve_priority(7, 10) == 7


@pytest.mark.parametrize("bad", ["urgent", 11, -1, True, 2.5])
def test_bad_priorities_say_what_is_allowed(bad):
    with pytest.raises(ConveyorError, match="low, normal, high"):
        resolve_priority(bad, 10)


def broker_priorities(runtime, step_name):
    queue = runtime.broker.queues[runtime.actors[step_name].queue_name]
    return [dramatiq.Message.decode(raw).options["broker_priority"] for raw in queue.queue]


def test_message_overrides_step_which_overrides_default(tmp_path):
    registry = Registry()
    step(name="Plain", triggers=[queue("plain")], registry=registry)(lambda d, c: None)
    step(name="Urgent", triggers=[queue("urgent")], registry=registry, priority="high")(lambda d, c: None)
    runtime = memory_runtime(tmp_path, registry, "[steps.Plain]\npriority = 3\n")
    runtime.publisher.publish("plain", {})
    runtime.publisher.publish("plain", {}, priority="low")
    runtime.publisher.publish("urgent", {})
    assert broker_priorities(runtime, "Plain") == [3, 1]
    assert broker_priorities(runtime, "Urgent") == [10]


def test_enqueue_with_a_bad_priority_fails_before_publishing(tmp_path):
    registry = Registry()
    step(name="Plain", triggers=[queue("plain")], registry=registry)(lambda d, c: None)
    runtime = memory_runtime(tmp_path, registry)
    with pytest.raises(ConveyorError, match="from 0 to 10"):
        runtime.publisher.publish("plain", {}, priority=99)
    assert runtime.broker.queues[runtime.actors["Plain"].queue_name].qsize() == 0


def test_step_priority_beyond_max_priority_stops_start_up(tmp_path):
    registry = Registry()
    step(name="Plain", triggers=[queue("plain")], registry=registry)(lambda d, c: None)
    with pytest.raises(ConfigError, match="step 'Plain': priority 20"):
        memory_runtime(tmp_path, registry, "[steps.Plain]\npriority = 20\n")
