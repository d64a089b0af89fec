"""``python -m actors state``: the state store read from a shell, as the handlers keep it."""

from __future__ import annotations

import json

import pytest

from conveyor import Registry, queue, step
from conveyor.errors import ConveyorError
from conveyor.ops.cli import _parser, _run
from tests.helpers import memory_runtime


@pytest.fixture
def runtime(tmp_path):
    registry = Registry()
    step(name="Work", triggers=[queue("work")], registry=registry)(lambda data, ctx: None)
    built = memory_runtime(tmp_path, registry)
    built.state.set("orders", "o-1", {"status": "pending", "note": "<b>ünïcode</b>"})
    built.state.set("orders", "o-2", {"status": "completed", "items": list(range(200))})
    built.state.set("inventory", "widget", {"stock": 7})
    yield built
    built.close()


def run(runtime, *argv: str) -> str:
    return _run(runtime, _parser().parse_args(["state", *argv]))


def test_groups_lists_each_group_with_its_key_count(runtime):
    assert run(runtime, "groups").splitlines() == ["GROUP      KEYS", "inventory  1", "orders     2"]
    assert json.loads(run(runtime, "groups", "--json"))["groups"] == [
        {"group": "inventory", "keys": 1},
        {"group": "orders", "keys": 2},
    ]


def test_list_shows_keys_in_order_with_values_on_one_line(runtime):
    first, second = run(runtime, "list", "orders").splitlines()
    assert first == 'o-1  {"status": "pending", "note": "<b>ünïcode</b>"}'
    assert second.startswith('o-2  {"status": "completed", "items": [0, 1,') and second.endswith("…")
    listed = json.loads(run(runtime, "list", "orders", "--limit", "1", "--json"))
    assert listed == {
        "group": "orders",
        "items": [{"key": "o-1", "value": {"status": "pending", "note": "<b>ünïcode</b>"}}],
    }
    assert run(runtime, "list", "nothing-here") == "No keys in group 'nothing-here'."


def test_get_prints_the_value_as_json_and_names_a_missing_key(runtime):
    assert json.loads(run(runtime, "get", "inventory", "widget")) == {"stock": 7}
    with pytest.raises(ConveyorError, match=r"no key 'nope' in state group 'inventory' \(see `state list inventory`\)"):
        run(runtime, "get", "inventory", "nope")


def test_reading_writes_nothing(runtime):
    before = runtime.state.groups()
    for argv in (("groups",), ("list", "orders"), ("get", "orders", "o-1")):
        run(runtime, *argv)
    assert runtime.state.groups() == before
