from __future__ import annotations

import pytest

from conveyor.errors import StateOpError
from conveyor.store.ops import apply_ops


def test_set_at_a_dotted_path_creates_parents():
    assert apply_ops({"a": 1}, [{"type": "set", "path": "b.c", "value": 2}]) == {"a": 1, "b": {"c": 2}}


def test_set_without_path_replaces_the_value():
    assert apply_ops({"a": 1}, [{"type": "set", "value": [1, 2]}]) == [1, 2]


def test_plain_dict_merges_like_the_messages_seed():
    assert apply_ops({"status": "pending", "text": "hi"}, {"status": "processed"}) == {
        "status": "processed",
        "text": "hi",
    }


def test_merge_at_path():
    value = {"meta": {"a": 1}}
    assert apply_ops(value, [{"type": "merge", "path": "meta", "value": {"b": 2}}]) == {"meta": {"a": 1, "b": 2}}


def test_increment_decrement_and_bounds():
    value = apply_ops(None, [{"type": "increment", "path": "n"}, {"type": "increment", "path": "n", "by": 4}])
    assert value == {"n": 5}
    assert apply_ops(value, [{"type": "decrement", "path": "n", "by": 2}]) == {"n": 3}
    assert apply_ops(value, [{"type": "decrement", "path": "n", "by": 9, "min": 0}]) == {"n": 0}
    assert apply_ops(value, [{"type": "increment", "path": "n", "by": 9, "max": 6}]) == {"n": 6}


def test_remove_a_field():
    assert apply_ops({"a": 1, "b": {"c": 2, "d": 3}}, [{"type": "remove", "path": "b.c"}]) == {"a": 1, "b": {"d": 3}}


def test_ops_do_not_mutate_their_input():
    original = {"n": 1, "nested": {"x": 1}}
    apply_ops(original, [{"type": "increment", "path": "n"}, {"type": "set", "path": "nested.x", "value": 9}])
    assert original == {"n": 1, "nested": {"x": 1}}


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"type": "explode"}], "unknown state op type 'explode'"),
        ([{"type": "increment", "path": "s"}], "s must be a number"),
        ([{"type": "increment"}], "needs a 'path'"),
        ([{"type": "merge", "value": 3}], "merge needs a dict"),
    ],
)
def test_malformed_ops_say_what_is_wrong(ops, message):
    with pytest.raises(StateOpError, match=message):
        apply_ops({"s": "text"}, ops)
