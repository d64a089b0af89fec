"""Input validation shared by the gateway and the workers: pydantic errors as ``[{"field", "reason"}]``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import InvalidInput


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{"field": "items.0.price", "reason": "..."}]``."""
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "(root)", "reason": error["msg"]}
        for error in exc.errors()
    ]


def parse_input(step_name: str, model: type[BaseModel] | None, data: Any) -> Any:
    """``data`` validated against ``model`` (unchanged without one); raises :class:`~conveyor.errors.InvalidInput`."""
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(step_name, validation_errors(exc)) from None
