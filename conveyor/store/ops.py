"""Motia's state update operations, applied to a JSON value (pure functions, no storage)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StateOpError

#: What ``state.update`` accepts: a list of ops, or a plain dict that is merged into the value.
Ops = Sequence[Mapping[str, Any]] | Mapping[str, Any]

OP_TYPES = ("set", "merge", "increment", "decrement", "remove")


def apply_ops(value: Any, ops: Ops, *, in_place: bool = False) -> Any:
    """Return a new value with ``ops`` applied in order; ``value`` is left untouched unless ``in_place``.

    ``in_place`` skips the copy, for a value nobody else holds (one just decoded from JSON).

    >>> apply_ops({"stock": 5}, [{"type": "decrement", "path": "stock", "by": 2}])
    {'stock': 3}
    >>> apply_ops({"a": 1}, {"b": 2})
    {'a': 1, 'b': 2}
    """
    if isinstance(ops, Mapping):
        ops = [{"type": "merge", "value": ops}]
    if value is None:
        result: Any = {}
    else:
        result = value if in_place else copy.deepcopy(value)
    for op in ops:
        result = _apply(result, op)
    return result


def _apply(value: Any, op: Mapping[str, Any]) -> Any:
    kind = op.get("type")
    path = _split(op.get("path"))
    if kind == "set":
        return _put(value, path, op.get("value"))
    if kind == "merge":
        patch = op.get("value")
        if not isinstance(patch, Mapping):
            raise StateOpError(f"merge needs a dict 'value', got {type(patch).__name__}")
        current = _get(value, path)
        if current is None:
            current = {}
        if not isinstance(current, dict):
            raise StateOpError(f"cannot merge into {'.'.join(path) or 'the value'}: it is not an object")
        return _put(value, path, {**current, **patch})
    if kind in ("increment", "decrement"):
        return _step_number(value, path, op, sign=1 if kind == "increment" else -1)
    if kind == "remove":
        if not path:
            return None
        parent = _get(value, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        return value
    raise StateOpError(f"unknown state op type {kind!r}; use one of {', '.join(OP_TYPES)}")


def _step_number(value: Any, path: list[str], op: Mapping[str, Any], sign: int) -> Any:
    if not path:
        raise StateOpError(f"{op.get('type')} needs a 'path' naming the number to change")
    by = op.get("by", op.get("value", 1))
    current = _get(value, path)
    current = 0 if current is None else current
    for name, number in (("by", by), (".".join(path), current)):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise StateOpError(f"{op.get('type')}: {name} must be a number, got {number!r}")
    new = current + sign * by
    # Optional bounds keep "never below zero" atomic instead of a read-then-write in the handler.
    if "min" in op and new < op["min"]:
        new = op["min"]
    if "max" in op and new > op["max"]:
        new = op["max"]
    return _put(value, path, new)


def _split(path: Any) -> list[str]:
    if path in (None, ""):
        return []
    if not isinstance(path, str):
        raise StateOpError(f"op path must be a dotted string, got {path!r}")
    return path.split(".")


def _get(value: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _put(value: Any, path: list[str], new: Any) -> Any:
    if not path:
        return new
    if not isinstance(value, dict):
        raise StateOpError(f"cannot set {'.'.join(path)}: the stored value is not an object")
    node = value
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = new
    return value
