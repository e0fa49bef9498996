"""Validators: check (and coerce) a node's input and output against schemas.

Messages describe what the schema expected, never the value that failed: a node's input may
hold a secret (``{{ globals.token }}``), and a validation failure becomes an error text that
is stored with the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import jsonschema
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError


class ValidationIssue(TypedDict):
    """One problem: ``path`` is dotted (``"items.0.name"``), ``"root"`` for the value itself."""

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The outcome of a validation; ``data`` is the coerced value when ``valid``."""

    valid: bool
    data: Any = None
    errors: list[ValidationIssue] = field(default_factory=list)


class Validator:
    """Validates node input (and output) against the node definition's metadata.

    The engine calls :meth:`validate` with the transformed input and the definition's
    ``metadata`` before the executor, and :meth:`validate_output` with the output after it,
    but only when a validator is configured and the definition has metadata. Either method
    may be ``def`` or ``async def``. The base class accepts everything.
    """

    def validate(self, data: Any, schema: Any) -> Any:
        """Return a :class:`ValidationResult` for the node input."""
        return ValidationResult(valid=True, data=data)

    def validate_output(self, data: Any, schema: Any) -> Any:
        """Return a :class:`ValidationResult` for the node output. Accepts all by default."""
        return ValidationResult(valid=True, data=data)


_JSON_SCHEMA_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "$schema",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "enum",
        "const",
        "items",
        "required",
        "additionalProperties",
        "patternProperties",
        "$defs",
    }
)


def _dotted(path: Any) -> str:
    parts = [str(part) for part in path]
    return ".".join(parts) if parts else "root"


class SchemaValidator(Validator):
    """Validates with pydantic models or JSON Schema dicts.

    ``schema`` is a node definition's metadata: ``metadata["input"]`` is checked before the
    executor and ``metadata["output"]`` after it. Each may be a pydantic model class (the
    executor then receives a model instance; an output is stored as its JSON dump) or a JSON
    Schema dict (Draft 2020-12, checked with ``jsonschema``; data passes through unchanged).
    A schema given directly instead of a metadata dict is used for the input. Metadata with
    neither key validates nothing.
    """

    def __init__(self) -> None:
        self._compiled: dict[int, tuple[Mapping[str, Any], Any]] = {}

    def validate(self, data: Any, schema: Any) -> ValidationResult:
        return self._check(data, _pick(schema, "input", allow_direct=True), output=False)

    def validate_output(self, data: Any, schema: Any) -> ValidationResult:
        return self._check(data, _pick(schema, "output", allow_direct=False), output=True)

    def _check(self, data: Any, schema: Any, *, output: bool) -> ValidationResult:
        if schema is None:
            return ValidationResult(valid=True, data=data)
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return _check_model(data, schema, output=output)
        if isinstance(schema, Mapping):
            return self._check_json_schema(data, schema)
        raise TypeError(
            f"a schema must be a pydantic model class or a JSON Schema dict, got {schema!r}"
        )

    def _check_json_schema(self, data: Any, schema: Mapping[str, Any]) -> ValidationResult:
        cached = self._compiled.get(id(schema))
        if cached is None or cached[0] is not schema:
            validator_cls = jsonschema.validators.validator_for(schema)
            validator_cls.check_schema(dict(schema))
            compiled = validator_cls(dict(schema), format_checker=validator_cls.FORMAT_CHECKER)
            cached = (schema, compiled)
            self._compiled[id(schema)] = cached
        errors = sorted(cached[1].iter_errors(data), key=lambda err: list(err.absolute_path))
        if errors:
            return ValidationResult(
                valid=False,
                errors=[
                    ValidationIssue(path=_dotted(err.absolute_path), message=_describe(err))
                    for err in errors
                ],
            )
        return ValidationResult(valid=True, data=data)


_SCHEMA_SIDE = {
    "type": "expected type {}",
    "enum": "not one of the allowed values",
    "const": "not the expected constant",
    "minLength": "shorter than {} characters",
    "maxLength": "longer than {} characters",
    "pattern": "does not match the pattern {!r}",
    "format": "not a valid {}",
    "minimum": "less than {}",
    "maximum": "greater than {}",
    "exclusiveMinimum": "not greater than {}",
    "exclusiveMaximum": "not less than {}",
    "multipleOf": "not a multiple of {}",
    "minItems": "fewer than {} items",
    "maxItems": "more than {} items",
    "uniqueItems": "items are not unique",
    "minProperties": "fewer than {} properties",
    "maxProperties": "more than {} properties",
    "additionalProperties": "has properties the schema does not allow",
    "unevaluatedProperties": "has properties the schema does not allow",
    "propertyNames": "has a property name the schema does not allow",
}


def _describe(error: jsonschema.ValidationError) -> str:
    """A message built from the schema alone: never the failing value, never its keys."""
    keyword = str(error.validator)
    if keyword == "required":
        # The names come from the schema; jsonschema's text names just the missing one.
        return str(error.message)
    template = _SCHEMA_SIDE.get(keyword)
    if template is None:
        return f"fails the schema's {keyword!r} rule"
    return template.format(error.validator_value)


def _pydantic_message(issue: Any) -> str:
    """Pydantic's message, except for custom validators, whose text may quote the value."""
    if issue["type"] in ("value_error", "assertion_error"):
        return f"invalid value ({issue['type']})"
    return str(issue["msg"])


def _pick(schema: Any, key: str, *, allow_direct: bool) -> Any:
    if isinstance(schema, Mapping):
        if "input" in schema or "output" in schema:
            return schema.get(key)
        if allow_direct and _JSON_SCHEMA_KEYWORDS.intersection(schema):
            return schema
        return None
    if allow_direct and isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    return None


def _check_model(data: Any, model: type[BaseModel], *, output: bool) -> ValidationResult:
    try:
        instance = data if isinstance(data, model) else model.model_validate(data)
    except PydanticValidationError as err:
        return ValidationResult(
            valid=False,
            errors=[
                ValidationIssue(path=_dotted(issue["loc"]), message=_pydantic_message(issue))
                for issue in err.errors(include_input=False, include_url=False)
            ],
        )
    return ValidationResult(
        valid=True, data=instance.model_dump(mode="json") if output else instance
    )
