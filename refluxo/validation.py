"""Validators: check (and coerce) a node's input and output against schemas."""

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
                    ValidationIssue(path=_dotted(err.absolute_path), message=err.message)
                    for err in errors
                ],
            )
        return ValidationResult(valid=True, data=data)


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
                ValidationIssue(path=_dotted(issue["loc"]), message=issue["msg"])
                for issue in err.errors()
            ],
        )
    return ValidationResult(
        valid=True, data=instance.model_dump(mode="json") if output else instance
    )
