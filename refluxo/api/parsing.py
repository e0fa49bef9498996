"""Reading a request into the route's models, and saying clearly what is wrong with it.

The body is read here, not by pydantic, because the API refuses more than JSON's grammar
does: bodies over the size limit (413, even without a ``Content-Length``), ``NaN`` and
``Infinity``, numbers that overflow to infinity, lone surrogates (which parse, but no
UTF-8 text and no store can hold) and nesting deeper than :data:`MAX_BODY_DEPTH`. What
remains is validated by the models, and their errors are turned into one message that
names the field, such as ``missing field 'workflow'`` or ``limit must be between 1 and
200``.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from refluxo.errors import LimitExceededError
from refluxo.runtime.errors import BadRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1 << 20
"""Request bodies above 1 MiB are refused with 413 (unless the API is given another limit)."""

MAX_BODY_DEPTH = 512
"""How deep a body's arrays and objects may nest. Python code recurses over JSON values
(its parser, the stores' encoders), and a request must be refused (400) well before one of
them runs out of stack (a 500); no workflow's input or payload needs more."""


class Where(enum.Enum):
    """Which part of the request a model reads (it words the messages)."""

    PATH = "path"
    QUERY = "query"
    BODY = "body"


class _Stream(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class HasBody(Protocol):
    """What the body reader needs of a request (a werkzeug request fits)."""

    @property
    def content_length(self) -> int | None: ...

    @property
    def stream(self) -> _Stream: ...


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def read_body(request: HasBody, limit: int, *, required: bool) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty and not ``required``).

    Raises:
        PayloadTooLarge: the body is over ``limit`` bytes (declared or actual).
        BadRequest: the body is missing, not JSON as the API reads it, or not an object.
        LimitExceededError: the body nests deeper than :data:`MAX_BODY_DEPTH`.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    if not raw:
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
        # Lone surrogates ("\ud800") parse, but no UTF-8 text (nor the store) holds them.
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, UnicodeError) as err:
        raise BadRequest(f"malformed JSON body: {err}") from err
    except RecursionError:
        raise _too_deep() from None  # deeper than Python's parser recurses
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if _depth(body) > MAX_BODY_DEPTH:
        raise _too_deep()
    return body


def _too_deep() -> LimitExceededError:
    return LimitExceededError(f"the body is nested more than {MAX_BODY_DEPTH} levels deep")


def _depth(value: Any) -> int:
    """How many arrays and objects deep ``value`` nests (without recursing: it may be deep)."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict):
            children: Iterable[Any] = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def validate(model: type[M], data: Mapping[str, Any], where: Where) -> M:
    """``data`` as ``model``, or :class:`BadRequest` naming the first field that is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise BadRequest(describe(model, err.errors(include_url=False)[0], where)) from None


@cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _property(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON schema of one field, ``$ref`` resolved: the bounds the document shows."""
    schema = _schema(model)
    prop: dict[str, Any] = schema.get("properties", {}).get(name, {})
    ref = prop.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = schema["$defs"][ref.rsplit("/", 1)[-1]]
        return resolved
    return prop


_TYPE_ERRORS = frozenset(
    {"not_null", "string_type", "int_type", "bool_type", "float_type", "dict_type", "list_type"}
)
_BOUND_ERRORS = frozenset({"greater_than_equal", "less_than_equal", "greater_than", "less_than"})
_PYTHON_NAMES = {
    "string": "str",
    "integer": "int",
    "boolean": "bool",
    "number": "float",
    "object": "dict",
    "array": "list",
}


def describe(model: type[BaseModel], error: ErrorDetails, where: Where) -> str:
    """One clear sentence for a validation error, naming the field by its wire name."""
    name = str(error["loc"][0]) if error["loc"] else ""
    subject = f"field {name!r}" if where is Where.BODY else name
    kind = error["type"]
    schema = _property(model, name)
    if kind == "missing":
        return f"missing field {name!r}" if where is Where.BODY else f"missing {name}"
    if kind in _TYPE_ERRORS:
        expected = _PYTHON_NAMES.get(str(schema.get("type")), str(schema.get("type", "?")))
        return f"{subject} must be of type {expected}"
    if kind == "not_an_integer":
        return f"{subject} must be an integer"
    if kind in _BOUND_ERRORS:
        low, high = schema.get("minimum"), schema.get("maximum")
        if low == 0 and high is not None:
            return f"{subject} must be non-negative, at most {high}"
        if low is not None and high is not None:
            return f"{subject} must be between {low} and {high}"
        return f"{subject}: {error['msg']}"
    if kind == "enum":
        return f"{subject} must be one of {', '.join(map(str, schema.get('enum', [])))}"
    if kind == "run_id":
        return error["msg"]  # already names the field, with the rule
    return f"{subject}: {error['msg']}"
