"""What the state store accepts: group and key names, JSON values, and times to live."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from ..errors import StateKeyError, StateValueError

#: The longest group name or key, in characters (both backends index them).
MAX_NAME_LENGTH = 512

#: A time to live: seconds, or a ``timedelta``.
TTL = float | timedelta


#: Compact JSON, refusing NaN and infinities (which JSON has no words for). Made once: json.dumps
#: with options other than its defaults builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def check_names(group: str, key: str | None = None) -> None:
    """Raise :class:`StateKeyError` unless ``group`` (and ``key``) can be stored on every backend."""
    if (
        type(group) is str
        and type(key) is str
        and 0 < len(group) <= MAX_NAME_LENGTH
        and 0 < len(key) <= MAX_NAME_LENGTH
        and "\x00" not in group
        and "\x00" not in key
    ):
        return  # the usual case, checked in one go
    _check_name("group", group, group, key)
    if key is not None:
        _check_name("key", key, group, key)


def _check_name(what: str, name: object, group: object, key: object) -> None:
    where = f"state {group!r}" + (f" key {key!r}" if key is not None else "")
    if not isinstance(name, str):
        raise StateKeyError(f"{where}: the {what} must be a string, got {type(name).__name__}")
    if not name:
        raise StateKeyError(f"{where}: the {what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise StateKeyError(
            f"{where[:80]}...: the {what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if "\x00" in name:
        raise StateKeyError(f"{where}: the {what} holds a NUL character, which PostgreSQL cannot store in a name")


def encode(group: str, key: str, value: Any) -> str:
    """``value`` as compact JSON text, or :class:`StateValueError` naming the group and key.

    The text escapes every control character (a NUL becomes ``\\u0000``), so both backends
    store any JSON string as it came.
    """
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise StateValueError(
            f"state {group!r} key {key!r}: the value cannot be stored as JSON ({exc}). Store plain dicts, "
            "lists, strings, numbers, booleans and None; for a pydantic model use .model_dump(mode='json')."
        ) from None


def decode(text: str) -> Any:
    """The value stored as ``text``."""
    return json.loads(text)


def expiry(ttl: TTL | None) -> float | None:
    """The Unix time a value set now with ``ttl`` expires at (``None``: never)."""
    if ttl is None:
        return None
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds > 0:
        raise ValueError(f"ttl must be a positive number of seconds or a timedelta, got {ttl!r}")
    return time.time() + seconds
