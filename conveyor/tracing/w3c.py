"""W3C Trace Context: reading and writing the ``traceparent`` header, and the OpenTelemetry ids
of Conveyor's traces.

A ``traceparent`` is ``<version>-<trace-id>-<parent-id>-<flags>``: 2, 32, 16 and 2 lowercase hex
digits (https://www.w3.org/TR/trace-context/#traceparent-header). A request that carries a valid
one joins the caller's trace; anything malformed is ignored, and the request starts a trace of
its own, as the spec asks.

Example::

    parsed = parse_traceparent(request.headers.get("traceparent"))
    if parsed is not None:
        trace_id, parent_span_id = parsed
"""

from __future__ import annotations

import hashlib
import re

_HEX = frozenset("0123456789abcdef")
_VERSION_00_LENGTH = 55
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(char in _HEX for char in text)


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` from a valid W3C ``traceparent`` header, else ``None``.

    Never raises. Rejected: version ``ff``, a trace id or parent id of zeros, fields of the
    wrong length, uppercase or non-hex digits, and a version-00 header with anything after its
    flags. A header of a later version is read by its first four fields, as the spec says.
    """
    if not isinstance(header, str):
        return None
    # Surrounding spaces and tabs are optional whitespace in an HTTP header value.
    value = header.strip(" \t")
    if len(value) < _VERSION_00_LENGTH:
        return None
    version = value[:2]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and len(value) != _VERSION_00_LENGTH:
        return None
    # A later version may append fields, but only after another dash.
    if len(value) > _VERSION_00_LENGTH and value[_VERSION_00_LENGTH] != "-":
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if not (_is_hex(trace_id, 32) and _is_hex(parent_id, 16) and _is_hex(flags, 2)):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


def traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """The ``traceparent`` header value naming ``span_id`` of ``trace_id`` as the parent.

    Conveyor trace ids that are not W3C ids (a client's ``x-request-id``) go through
    :func:`otel_trace_id`, so the header is always valid and always the same for one trace.
    """
    return f"00-{otel_trace_id(trace_id)}-{otel_span_id(span_id)}-{'01' if sampled else '00'}"


def otel_trace_id(trace_id: str) -> str:
    """The W3C / OpenTelemetry trace id (32 lowercase hex digits) of a Conveyor trace id.

    An id that already is one (what Conveyor makes: ``uuid4().hex``) is used as it is; any
    other (a client's ``x-request-id``, up to 64 characters) is hashed to one, the same every
    time, so every span of that trace lands in one OpenTelemetry trace.
    """
    if _TRACE_ID.fullmatch(trace_id) and trace_id != "0" * 32:
        return trace_id
    return _hashed(trace_id, 32)


def otel_span_id(span_id: str) -> str:
    """The W3C span id (16 lowercase hex digits) of a Conveyor span id (already one, or hashed)."""
    if _SPAN_ID.fullmatch(span_id) and span_id != "0" * 16:
        return span_id
    return _hashed(span_id, 16)


def _hashed(text: str, digits: int) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    # All zeros is the one invalid id; a digest that short of luck gets its last digit set.
    return digest if digest.strip("0") else digest[:-1] + "1"
