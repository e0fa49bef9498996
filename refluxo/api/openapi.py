"""The OpenAPI 3.0 document, generated from a route table and its models.

Nothing here is written by hand but the prose: each operation comes from a
:class:`~refluxo.api.contract.Route` (method, path, authentication, statuses) and each
schema from the pydantic model that validates or produces that part of the exchange, so
the document cannot promise what the code does not do. Schemas are written in OpenAPI
3.0's dialect of JSON Schema (see :class:`_Generator`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from refluxo.api.contract import Auth, Route
from refluxo.api.models import ErrorBody
from refluxo.api.parsing import MAX_BODY_BYTES, MAX_JSON_DEPTH

REF_TEMPLATE = "#/components/schemas/{model}"

SECURITY_SCHEMES: dict[Auth, tuple[str, dict[str, Any]]] = {
    Auth.CALLER: ("apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}),
    Auth.SCHEDULER: ("oidc", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
    Auth.RECONCILER: ("oidc", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
}
"""The security scheme each protected kind of route declares, by name."""

_ERROR_TEXT = {
    400: "malformed request",
    401: "missing or invalid credentials",
    403: "not allowed",
    404: "unknown run or workflow",
    409: "the run is not in a state for this request",
    413: "body too large",
    415: "the body is not application/json",
    421: "the Host header names no address this server answers (REFLUXO_ALLOWED_HOSTS)",
    503: "the store or scheduler is unavailable; retry",
}


class _Generator(GenerateJsonSchema):
    """Pydantic's JSON Schema in the OpenAPI 3.0 dialect (an extended subset of draft 4).

    Draft 4, not 2020-12 (OpenAPI 3.1), because its ``integer`` excludes ``1.0``, as the API
    always has; 3.1 would declare ``{"version": 0.0}`` valid. So: ``nullable`` rather than a
    ``null`` type, ``enum`` rather than ``const``, no ``null`` default (it stands for "left
    out"), and no per-field titles (``Runid``...), which say nothing.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:
            return {"allOf": [inner], "nullable": True}
        return {**inner, "nullable": True}

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        generated = super().literal_schema(schema)
        if "const" in generated:
            generated["enum"] = [generated.pop("const")]
        return generated

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        generated = super().default_schema(schema)
        if "default" in generated and generated["default"] is None:
            del generated["default"]
        return generated


def _openapi30(value: Any) -> Any:
    """``value`` with every ``$ref`` alone in its object, as OpenAPI 3.0 reads one (it
    ignores a reference's siblings): ``{"$ref", "description"}`` becomes an ``allOf``."""
    if isinstance(value, list):
        return [_openapi30(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _openapi30(item) for key, item in value.items()}
    if "$ref" in converted and len(converted) > 1:
        return {"allOf": [{"$ref": converted.pop("$ref")}], **converted}
    return converted


def _parameters(
    model: type[BaseModel] | None, location: str, definitions: dict[str, Any]
) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, schema_generator=_Generator)
    definitions.update(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": location,
            "required": location == "path" or name in required,
            "schema": field,
        }
        for name, field in schema["properties"].items()
    ]


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_statuses(route: Route) -> list[int]:
    implied = set(route.errors)
    if route.query is not None or route.body is not None:
        implied.add(400)
    if route.body is not None:
        implied.update({413, 415})
    if route.auth is not Auth.PUBLIC:
        implied.update({401, 403})
    implied.add(421)
    return sorted(implied)


def _links(route: Route, operation_ids: frozenset[str]) -> dict[str, Any]:
    links: dict[str, Any] = {}
    for link in route.links:
        if link.operation_id not in operation_ids:
            raise ValueError(f"{route.label} links to an unknown operation {link.operation_id!r}")
        links[link.name] = {
            "operationId": link.operation_id,
            "parameters": dict(link.parameters),
            "description": link.description,
        }
    return links


def _operation(
    route: Route,
    refs: Mapping[tuple[type, str], dict[str, Any]],
    definitions: dict[str, Any],
    operation_ids: frozenset[str],
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    if route.auth is not Auth.PUBLIC:
        operation["security"] = [{SECURITY_SCHEMES[route.auth][0]: []}]
    parameters = _parameters(route.path_model, "path", definitions) + _parameters(
        route.query, "query", definitions
    )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": _content(refs[(route.body, "validation")]),
        }
    success = refs[(route.response, "serialization")]
    links = _links(route, operation_ids)
    responses: dict[str, Any] = {}
    for status, meaning in ((route.status, route.summary), *route.other_successes):
        response: dict[str, Any] = {"description": meaning, "content": _content(success)}
        if links:
            response["links"] = links
        responses[str(status)] = response
    error = refs[(ErrorBody, "serialization")]
    for status in _error_statuses(route):
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": _content(error)}
    operation["responses"] = responses
    return operation


def _models(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorBody, "serialization"): None
    }
    for route in routes:
        if route.body is not None:
            models[(route.body, "validation")] = None
        models[(route.response, "serialization")] = None
    return list(models)


@cache
def _document(table: tuple[Route, ...]) -> dict[str, Any]:
    # The run inspector's pages and files are not API operations: left out.
    routes = tuple(route for route in table if route.documented)
    generated, top = models_json_schema(
        _models(routes), ref_template=REF_TEMPLATE, schema_generator=_Generator
    )
    refs: dict[tuple[type, str], dict[str, Any]] = dict(generated.items())
    definitions: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    operation_ids = frozenset(route.operation_id for route in routes)
    for route in routes:
        operation = _operation(route, refs, definitions, operation_ids)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    used = dict(SECURITY_SCHEMES[r.auth] for r in routes if r.auth is not Auth.PUBLIC)
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "refluxo",
            "version": "1",
            "description": "Start, follow, resume and cancel durable workflow runs. Bodies "
            "are JSON objects, sent as application/json (anything else that changes state "
            f"is refused, 415), nested at most {MAX_JSON_DEPTH} levels deep (400); one over "
            f"the server's size limit ({MAX_BODY_BYTES >> 20} MiB by default) is refused "
            "(413). Integers in the query are ASCII digits. Every error is "
            '{"error": {"code", "message"}}. The local server answers only the Host names '
            "it is reached by (421 otherwise), and a request line over 64 KiB with 414.",
        },
        "components": {
            "securitySchemes": dict(sorted(used.items())),
            "schemas": dict(sorted(definitions.items())),
        },
        "paths": paths,
    }
    converted: dict[str, Any] = _openapi30(document)
    return converted


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """A fresh copy of the OpenAPI document of ``routes`` (built once per table)."""
    return copy.deepcopy(_document(tuple(routes)))
