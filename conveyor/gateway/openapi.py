"""``GET /openapi.json``: an OpenAPI 3.1 document of the HTTP steps and the gateway's own answers.

Every HTTP trigger becomes an operation: the step's name is its ``operationId``, its
description the ``summary`` and its flows the ``tags``. The trigger's ``body`` model is the
JSON request body, its ``query`` model the query parameters, and each ``responses`` model the
body for that status. POST, PUT and PATCH operations take the optional ``Idempotency-Key``
header. The errors the gateway answers before or after the handler (400, 404, 409, 413, 415,
422, 500, 503) are documented on the operations where they can occur, 405 (a method a path
lacks) on each path and in ``components/responses``, and ``GET /health`` beside the steps.
Models are shared through ``components/schemas``::

    from gateway.openapi import openapi_document

    document = openapi_document(runtime)
    document["paths"]["/orders"]["post"]["operationId"]  # "CreateOrder"
"""

from __future__ import annotations

import re
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..declare.steps import Step
from ..declare.triggers import HttpTrigger
from ..runtime import Runtime
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import METHODS as IDEMPOTENT_METHODS
from .idempotency import REPLAYED_HEADER
from .parsing import MAX_JSON_DEPTH
from .serving import PID_HEADER

#: Where :func:`openapi_route` serves the document.
OPENAPI_PATH = "/openapi.json"

_REF_TEMPLATE = "#/components/schemas/{model}"
# Starlette's path parameters: ``{name}`` or ``{name:convertor}``.
_PATH_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")
# What each Starlette convertor matches, as a JSON schema.
_CONVERTOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "minLength": 1, "pattern": "^[^/\\u0000-\\u001f\\u007f]+$"},
    "path": {"type": "string"},
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}
_JSON = "application/json"


class FieldProblem(BaseModel):
    """One field the request got wrong."""

    field: str = Field(description="Dotted path of the field (items.0.price), or (root) for the whole value")
    reason: str


class GatewayError(BaseModel):
    """An error the gateway answers itself: error says what went wrong."""

    error: str


class InvalidRequest(BaseModel):
    """A request the gateway refused before the step ran; fields names each failing field, if any."""

    error: str = Field(description="Malformed JSON: ..., Invalid request body, Invalid query string, ...")
    fields: list[FieldProblem] = Field(default_factory=list)


class BodyTooLarge(BaseModel):
    """The request body is larger than the gateway's limit ([gateway] max_body_size)."""

    error: str
    limit: int = Field(description="The limit, in bytes")


class InternalError(BaseModel):
    """The step crashed; the gateway's log holds the traceback under requestId."""

    error: str
    requestId: str


class Health(BaseModel):
    """Whether the gateway reaches RabbitMQ and the state store."""

    status: Literal["ok", "unavailable"]
    rabbitmq: str = Field(description='"ok", or why RabbitMQ is unreachable')
    state: str = Field(description='"ok", or why the state store is unreachable')


_GATEWAY_MODELS: tuple[type[BaseModel], ...] = (GatewayError, InvalidRequest, BodyTooLarge, InternalError, Health)


def openapi_document(runtime: Runtime, *, openapi_path: str | None = OPENAPI_PATH) -> dict[str, Any]:
    """An OpenAPI 3.1 document of the runtime's HTTP steps, ``GET /health`` and ``GET openapi_path``.

    Pass ``openapi_path=None`` to leave the document's own route out.
    """
    operations = [(step, trigger) for step in runtime.registry for trigger in step.http_triggers]
    schemas = _Schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    counts = Counter(step.name for step, _ in operations)
    for step, trigger in operations:
        path, parameters = _path_and_parameters(trigger.path)
        operation_id = step.name
        if counts[step.name] > 1:  # one step, several triggers: operation ids must stay unique
            operation_id += "_" + "_".join(re.findall(r"[A-Za-z0-9]+", f"{trigger.method} {path}")).lower()
        item = paths.setdefault(path, {})
        item[trigger.method.lower()] = _step_operation(step, trigger, operation_id, parameters, schemas)
    # The gateway's own routes come before the steps' in build_app, so they win a clash here too.
    paths.setdefault("/health", {})["get"] = {
        "operationId": "health",
        "summary": "Can the gateway reach RabbitMQ and the state store?",
        "tags": ["gateway"],
        "responses": {
            "200": _with_pid(_json_response("Every component answers", schemas.ref(Health))),
            "413": _json_response(_TOO_LARGE, schemas.ref(BodyTooLarge)),
            "503": _with_pid(_json_response("A component is unreachable; the body says which", schemas.ref(Health))),
        },
    }
    if openapi_path is not None:
        paths.setdefault(openapi_path, {})["get"] = {
            "operationId": "openapi",
            "summary": "This OpenAPI document",
            "tags": ["gateway"],
            "responses": {
                "200": _json_response("The OpenAPI 3.1 document", {"type": "object"}),
                "413": _json_response(_TOO_LARGE, schemas.ref(BodyTooLarge)),
            },
        }
    for item in paths.values():
        item["description"] = (
            f"Methods not listed here answer 405 with an Allow header and a {schemas.name(GatewayError)} body "
            "(components/responses/MethodNotAllowed)."
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Conveyor gateway",
            "version": _version(),
            "description": (
                "The HTTP steps of this Conveyor application. Every error body is JSON with an `error` "
                "that says what went wrong; every response carries an X-Request-Id header. Paths no route "
                "matches answer 404 (components/responses/NotFound)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.definitions,
            "responses": {
                "NotFound": _json_response("No route matches the path", schemas.ref(GatewayError)),
                "MethodNotAllowed": {
                    **_json_response("The path has no operation for the method", schemas.ref(GatewayError)),
                    "headers": {
                        "Allow": {"description": "The methods the path accepts", "schema": {"type": "string"}},
                        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
                    },
                },
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id: the client's own X-Request-Id, or one the gateway made",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
    }


def openapi_route(runtime: Runtime, path: str = OPENAPI_PATH) -> Route:
    """``GET path`` answering :func:`openapi_document`, built on the first request and kept."""
    built: list[dict[str, Any]] = []

    async def openapi(request: Request) -> JSONResponse:
        if not built:
            built.append(openapi_document(runtime, openapi_path=path))
        return JSONResponse(built[0])

    return Route(path, openapi, methods=["GET"], name="openapi")


_TOO_LARGE = "The request body is larger than [gateway] max_body_size"


class _Schemas:
    """The JSON schemas of every model the operations use, named once in ``components/schemas``."""

    def __init__(self, operations: list[tuple[Step, HttpTrigger]]) -> None:
        wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
        for _, trigger in operations:
            for model in (trigger.body, trigger.query):
                if model is not None:
                    wanted[(model, "validation")] = None
            for model in trigger.responses.values():
                wanted[(model, "serialization")] = None
        for model in _GATEWAY_MODELS:
            wanted[(model, "serialization")] = None
        # One call for all models: pydantic gives each a unique name and shares nested models.
        refs, top = models_json_schema(list(wanted), ref_template=_REF_TEMPLATE)
        self._refs = refs
        self.definitions: dict[str, Any] = top.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> dict[str, Any]:
        """``{"$ref": ...}`` to ``model``'s schema (or the schema itself, where pydantic inlined it)."""
        return dict(self._refs[(model, mode)])

    def name(self, model: type[BaseModel], mode: JsonSchemaMode = "serialization") -> str:
        """The component name of ``model``."""
        return self.ref(model, mode).get("$ref", "").rsplit("/", 1)[-1] or model.__name__

    def resolve(self, model: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, Any]:
        """``model``'s own schema, following the top-level ``$ref``."""
        schema = self.ref(model, mode)
        while "$ref" in schema:
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]]
        return schema


def _path_and_parameters(path: str) -> tuple[str, list[dict[str, Any]]]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": dict(_CONVERTOR_SCHEMAS.get(convertor or "str", {}))}
        for name, convertor in _PATH_PARAM.findall(path)
    ]
    return _PATH_PARAM.sub(r"{\1}", path), parameters


def _step_operation(
    step: Step, trigger: HttpTrigger, operation_id: str, parameters: list[dict[str, Any]], schemas: _Schemas
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": step.description or step.name,
    }
    if step.flows:
        operation["tags"] = list(step.flows)
    if step.enqueues:
        operation["description"] = f"Step {step.name}; enqueues to {', '.join(step.enqueues)}."
    else:
        operation["description"] = f"Step {step.name}."
    has_path_parameters = bool(parameters)
    parameters = parameters + _query_parameters(trigger, schemas)
    if trigger.method in IDEMPOTENT_METHODS:
        parameters.append(_IDEMPOTENCY_KEY)
    if parameters:
        operation["parameters"] = parameters
    if trigger.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {_JSON: {"schema": schemas.ref(trigger.body, "validation")}},
        }
    elif trigger.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        # Without a body model the handler gets whatever JSON came, or None.
        operation["requestBody"] = {"required": False, "content": {_JSON: {"schema": {}}}}
    operation["responses"] = _responses(step, trigger, has_path_parameters, schemas)
    return operation


def _query_parameters(trigger: HttpTrigger, schemas: _Schemas) -> list[dict[str, Any]]:
    if trigger.query is None:
        return []
    model = schemas.resolve(trigger.query)
    required = set(model.get("required", []))
    parameters = []
    for name, schema in model.get("properties", {}).items():
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameters.append(parameter)
    return parameters


def _responses(step: Step, trigger: HttpTrigger, has_path_parameters: bool, schemas: _Schemas) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted(trigger.responses.items()):
        if status == 204:
            responses[str(status)] = {"description": "No content", "headers": _REQUEST_ID}
        else:
            responses[str(status)] = _json_response(f"Declared by {step.name}", schemas.ref(model))
    if not trigger.responses:
        responses["default"] = _json_response(f"Whatever {step.name} answers (it declares no responses)", {})

    def gateway(status: int, description: str, model: type[BaseModel]) -> None:
        ours = schemas.ref(model)
        if str(status) not in responses:
            responses[str(status)] = _json_response(description, ours)
            return
        declared = responses[str(status)]
        schema = declared["content"][_JSON]["schema"]
        if schema != ours:
            declared["content"][_JSON]["schema"] = {"anyOf": [schema, ours]}
        declared["description"] += f"; also answered by the gateway. {description}"

    if trigger.body is not None:
        problems = f"the body is not JSON, is empty, nests deeper than {MAX_JSON_DEPTH} levels, or fails validation"
    else:
        problems = "a JSON body was sent and is malformed"
    if trigger.query is not None:
        problems += "; or the query string fails validation"
    if trigger.method in IDEMPOTENT_METHODS:
        problems += f"; or the {IDEMPOTENCY_HEADER} header is malformed"
    gateway(400, f"Refused: {problems}", InvalidRequest)
    if has_path_parameters:
        gateway(404, "No route matches: a path parameter is empty or holds '/'", GatewayError)
    gateway(413, _TOO_LARGE, BodyTooLarge)
    if trigger.body is not None:
        gateway(415, "The Content-Type is not application/json (or +json)", GatewayError)
    if trigger.method in IDEMPOTENT_METHODS:
        gateway(
            409, f"The first request with this {IDEMPOTENCY_HEADER} is still running: retry it shortly", GatewayError
        )
        gateway(422, f"This {IDEMPOTENCY_HEADER} was already used for a different request", GatewayError)
    gateway(500, "The step crashed; the log has the traceback under requestId", InternalError)
    if step.enqueues:
        gateway(503, "RabbitMQ did not confirm the enqueued work: nothing was queued, try again", GatewayError)
    return dict(sorted(responses.items()))


_REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}

_IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": IDEMPOTENCY_HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Run this request once: a repeat with the same key and the same request (method, path, query, "
        f"body) gets the first answer again, marked {REPLAYED_HEADER}: true, without running the step; "
        "the same key on another request is a 422; a repeat while the first runs waits for it, or gets a 409. "
        "Answers of 500 and more are not kept: retry them with the same key."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": _REQUEST_ID, "content": {_JSON: {"schema": schema}}}


def _with_pid(response: dict[str, Any]) -> dict[str, Any]:
    pid = {"description": "The pid of the gateway process that answered", "schema": {"type": "string"}}
    return {**response, "headers": {**response["headers"], PID_HEADER: pid}}


def _version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "0"
