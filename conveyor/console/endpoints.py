"""``/endpoints`` (every HTTP step with its schemas and a form that sends it a request, as Motia's
endpoint tester does) and ``/api-reference`` (the gateway's ``/openapi.json``, rendered readable).

Both read the document :func:`~conveyor.gateway.openapi.openapi_document` builds, never over HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..gateway.openapi import OPENAPI_PATH, openapi_document
from .rendering import Console

#: How deep nested schemas are spelled out (a model that holds itself stops here).
MAX_DEPTH = 4
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


@dataclass(frozen=True)
class SchemaField:
    """One line of a schema's table: ``depth`` indents the fields of nested objects."""

    name: str
    type: str
    required: bool
    description: str
    depth: int


@dataclass
class Operation:
    """One method of one path, as the pages show it."""

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tags: list[str]
    parameters: list[dict[str, Any]]
    body: list[SchemaField] | None
    body_required: bool
    example: str
    responses: list[tuple[str, str, list[SchemaField]]] = field(default_factory=list)

    @property
    def path_parameters(self) -> list[str]:
        return [p["name"] for p in self.parameters if p.get("in") == "path"]

    @property
    def query_parameters(self) -> list[dict[str, Any]]:
        return [p for p in self.parameters if p.get("in") == "query"]


class Schemas:
    """Reads the schemas of one OpenAPI document, following ``$ref`` into ``components/schemas``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.definitions: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 20:
            schema = self.definitions.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
            seen += 1
        return schema

    def type_name(self, schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            return str(schema["$ref"]).rsplit("/", 1)[-1]
        for union in ("anyOf", "oneOf"):
            if union in schema:
                return " | ".join(self.type_name(s) for s in schema[union])
        kind = schema.get("type")
        if kind == "array":
            return f"array of {self.type_name(schema.get('items', {}))}"
        if "enum" in schema:
            return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
        if "const" in schema:
            return json.dumps(schema["const"])
        if isinstance(kind, list):
            return " | ".join(map(str, kind))
        return str(kind or "any") + (f" ({schema['format']})" if "format" in schema else "")

    def fields(self, schema: dict[str, Any], depth: int = 0) -> list[SchemaField]:
        """The properties of ``schema`` (an object, or an array of objects), nested ones indented."""
        resolved = self.resolve(schema)
        if resolved.get("type") == "array":
            resolved = self.resolve(resolved.get("items", {}))
        rows: list[SchemaField] = []
        required = set(resolved.get("required", []))
        for name, prop in resolved.get("properties", {}).items():
            description = str(prop.get("description") or self.resolve(prop).get("description") or "")
            rows.append(SchemaField(name, self.type_name(prop), name in required, description, depth))
            if depth + 1 < MAX_DEPTH and self._nested(prop):
                rows += self.fields(prop, depth + 1)
        return rows

    def _nested(self, schema: dict[str, Any]) -> bool:
        resolved = self.resolve(schema)
        if resolved.get("type") == "array":
            resolved = self.resolve(resolved.get("items", {}))
        return bool(resolved.get("properties"))

    def sample(self, schema: dict[str, Any], depth: int = 0) -> Any:
        """The schema's example if it has one, else a value of its shape (what the tester pre-fills)."""
        resolved = self.resolve(schema)
        for source in (schema, resolved):
            if "example" in source:
                return source["example"]
            if source.get("examples"):
                return source["examples"][0]
        if "default" in resolved:
            return resolved["default"]
        if depth >= MAX_DEPTH:
            return None
        if "enum" in resolved:
            return resolved["enum"][0]
        for union in ("anyOf", "oneOf"):
            if union in resolved:
                options = [s for s in resolved[union] if s.get("type") != "null"] or resolved[union]
                return self.sample(options[0], depth + 1)
        kind = resolved.get("type")
        if kind == "object" or "properties" in resolved:
            return {name: self.sample(prop, depth + 1) for name, prop in resolved.get("properties", {}).items()}
        if kind == "array":
            return [self.sample(resolved.get("items", {}), depth + 1)]
        return {"string": "", "integer": 0, "number": 0, "boolean": False}.get(str(kind))


def operations(document: dict[str, Any], *, steps_only: bool = False) -> list[Operation]:
    """Every operation of ``document`` by path; ``steps_only`` leaves out the gateway's own (``/health``...)."""
    schemas = Schemas(document)
    found: list[Operation] = []
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None or (steps_only and "gateway" in operation.get("tags", [])):
                continue
            body = operation.get("requestBody")
            body_schema = (body or {}).get("content", {}).get("application/json", {}).get("schema")
            example = schemas.sample(body_schema) if body_schema else None
            responses = []
            for status, answer in operation.get("responses", {}).items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                responses.append((status, str(answer.get("description", "")), schemas.fields(schema) if schema else []))
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=str(operation.get("operationId", "")),
                    summary=str(operation.get("summary", "")),
                    description=str(operation.get("description", "")),
                    tags=list(operation.get("tags", [])),
                    parameters=[
                        {**p, "type": schemas.type_name(p.get("schema", {}))} for p in operation.get("parameters", [])
                    ],
                    body=schemas.fields(body_schema) if body_schema else None,
                    body_required=bool((body or {}).get("required")),
                    example="" if example is None else json.dumps(example, indent=2, ensure_ascii=False),
                    responses=responses,
                )
            )
    return found


def routes(console: Console) -> list[BaseRoute]:
    built: list[dict[str, Any]] = []

    def document() -> dict[str, Any]:
        if not built:  # the registry does not change while the gateway runs
            built.append(openapi_document(console.runtime))
        return built[0]

    def app_root(request: Request) -> str:
        # The console is mounted inside the gateway: the steps' paths are relative to the gateway's root.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return root.rsplit("/", 1)[0] if "/" in root else ""

    async def endpoints(request: Request) -> Response:
        return console.render(
            request,
            "endpoints.html",
            title="Endpoints",
            operations=operations(document(), steps_only=True),
            app_root=app_root(request),
        )

    async def reference(request: Request) -> Response:
        doc = document()
        return console.render(
            request,
            "endpoints_reference.html",
            title="API reference",
            info=doc.get("info", {}),
            operations=operations(doc),
            openapi_path=app_root(request) + OPENAPI_PATH,
        )

    return [Route("/endpoints", endpoints, methods=["GET"]), Route("/api-reference", reference, methods=["GET"])]
