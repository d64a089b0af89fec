"""Turn an HTTP request's body and query string into what the step's schemas accept, or a 4xx."""

from __future__ import annotations

import json
import math
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse

from ..declare.triggers import HttpTrigger
from ..declare.validation import validation_errors
from .errors import json_error

#: Nesting deeper than this is refused before it can exhaust the parser.
MAX_JSON_DEPTH = 64


class BadRequest(Exception):
    """A request the gateway refuses before the handler runs."""

    def __init__(self, status: int, error: str, **details: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details

    @property
    def response(self) -> JSONResponse:
        return json_error(self.status, self.error, **self.details)


async def read_body(http_request: HTTPRequest, trigger: HttpTrigger) -> Any:
    """The validated body model; without a ``body=`` model, the raw JSON (or ``None`` when there is none)."""
    content_type = http_request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if trigger.body is None:
        raw = await http_request.body()
        return _parse_json(raw) if is_json and raw.strip() else None
    if not is_json:
        raise BadRequest(415, f"Content-Type must be application/json, got {content_type or 'none'}")
    raw = await http_request.body()
    if not raw.strip():
        raise BadRequest(400, "Request body is empty; send a JSON object")
    # Strict, as JSON has types: "2" is not an integer and false is not a stock level.
    return validate(trigger.body, _parse_json(raw), "Invalid request body", strict=True)


def read_query(http_request: HTTPRequest, trigger: HttpTrigger) -> Any:
    """The validated query model, or a plain dict of the query string without a ``query=`` model."""
    params = http_request.query_params
    if trigger.query is None:
        return dict(params)
    list_fields = _list_fields(trigger.query)
    data = {
        key: values if key in list_fields or len(values) > 1 else values[0]
        for key in params
        for values in [params.getlist(key)]
    }
    return validate(trigger.query, data, "Invalid query string")


def check_path_params(params: dict[str, Any]) -> None:
    """Refuse path parameters holding control characters (a NUL in an id, say)."""
    for name, value in params.items():
        if isinstance(value, str) and any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise BadRequest(
                400,
                f"Path parameter {name!r} contains control characters",
                fields=[{"field": name, "reason": "must not contain control characters"}],
            )


def validate(model: type[BaseModel], data: Any, error: str, *, strict: bool = False) -> BaseModel:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise BadRequest(400, error, fields=validation_errors(exc)) from None


def _parse_json(raw: bytes) -> Any:
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadRequest(400, f"Malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"Malformed JSON: {exc}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise BadRequest(400, f"Malformed JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _list_fields(model: type[BaseModel]) -> set[str]:
    # A key given once arrives as one string; a list[...] field still wants a list.
    fields = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        candidates = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
        if any(typing.get_origin(c) in (list, set, tuple) or c in (list, set, tuple) for c in candidates):
            fields.add(field.alias or name)
    return fields


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float | int:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    # JSON has one number type: 1.0 is an integer to JSON Schema, so it is one to strict validation too.
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        nested: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(v for v in item.values() if isinstance(v, dict | list))
            elif isinstance(item, list):
                nested.extend(v for v in item if isinstance(v, dict | list))
        level = nested
    return depth if not level else limit
