"""Reading a request into the route's models, and saying clearly what is wrong with it.

The body is read here, not by pydantic, because the API refuses more than JSON's grammar
does: bodies over the size limit (413, even without a ``Content-Length``), ``NaN`` and
``Infinity``, numbers that overflow to infinity, lone surrogates (which parse, but no
UTF-8 text and no store can hold) and nesting deeper than :data:`MAX_JSON_DEPTH`. What
remains is validated by the models, and their errors are turned into one message that
names the field, such as ``missing field 'workflow'`` or ``limit must be between 1 and
200``. Pub/Sub messages are read by the same :func:`parse_json` (:mod:`refluxo.api.events`),
so both paths accept exactly the same JSON.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from refluxo.errors import LimitExceededError
from refluxo.json_objects import unique_keys
from refluxo.runtime.errors import BadRequest, PayloadTooLarge

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1 << 20
"""Request bodies above 1 MiB are refused with 413 (unless the API is given another limit)."""

MAX_JSON_DEPTH = 64
"""How deep a body's or a message's arrays and objects may nest (the body itself is level 1).

The stores keep every result as JSON and read it back with pydantic, whose parser stops at
200 levels; a payload becomes a node's output, inside the result's own object, and an
executor may wrap it further. 64 leaves that room (it is also how deep the transform engine
walks node data), and no workflow's input or payload needs more. Checked on the text,
without recursing, before anything parses it: deeper JSON is refused (400
``limit_exceeded``, or a rejected message) instead of reaching a ``RecursionError``."""


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


_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
"""What nesting depends on: an escape pair (consumed whole, so ``\\"`` never closes a
string), a quote, a bracket. A regex that matches whole strings instead backtracks
quadratically on an unclosed one."""


def json_depth(text: str) -> int:
    """How many arrays and objects deep the JSON ``text`` nests, read without parsing it.

    One pass over the escapes, quotes and brackets, each looked at once: linear in the
    text whatever it holds, and without recursion. Brackets inside strings do not count.
    Malformed text gets a number too (the parser refuses it afterwards).
    """
    depth = deepest = 0
    in_string = False
    for token in _TOKENS.finditer(text):
        char = token.group()
        if char == '"':
            in_string = not in_string
        elif in_string or len(char) == 2:
            continue
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, what: str) -> Any:
    """``raw`` as JSON, as the API reads it; ``what`` names it in the messages.

    Raises:
        LimitExceededError: it nests deeper than :data:`MAX_JSON_DEPTH` (checked first, on
            the text, so that no parser recurses into it).
        BadRequest: it is not JSON as the API reads it: not UTF-8 (or UTF-16/32, as JSON
            allows), not JSON's grammar, ``NaN`` or an infinity, a number that overflows, a
            lone surrogate, an object with a repeated key. The message is the reason alone;
            callers word the rest.
    """
    try:
        text = raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as err:
        raise BadRequest(f"not UTF-8 text: {err.reason} at byte {err.start}") from None
    # Fewer brackets than the limit cannot nest deeper: most texts skip the scan.
    openings = text.count("[") + text.count("{")
    if openings > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise LimitExceededError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(
            text,
            parse_constant=_not_json,
            parse_float=_finite_float,
            object_pairs_hook=unique_keys,
        )
        # Lone surrogates ("\ud800") parse, but no UTF-8 text (nor the store) holds them.
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest(
            "a lone UTF-16 surrogate (\\ud800-\\udfff), which no UTF-8 text holds"
        ) from None
    except (ValueError, UnicodeError) as err:
        if "integer string conversion" in str(err):
            raise BadRequest("an integer of more than 4,300 digits") from None
        raise BadRequest(str(err)) from None
    except RecursionError:  # unreachable after the depth check; never a 500 if it were
        raise LimitExceededError(
            f"{what} is nested more than {MAX_JSON_DEPTH} levels deep"
        ) from None
    return value


def read_body(request: HasBody, limit: int, *, required: bool) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty and not ``required``).

    Raises:
        PayloadTooLarge: the body is over ``limit`` bytes (declared or actual).
        BadRequest: the body is missing, not JSON as the API reads it, or not an object.
        LimitExceededError: the body nests deeper than :data:`MAX_JSON_DEPTH`.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    try:
        raw = request.stream.read(limit + 1)
    except Exception as err:  # werkzeug, gunicorn: a malformed chunked body, a cut stream
        raise BadRequest(
            f"the request body could not be read: {type(err).__name__} (malformed framing)"
        ) from None
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    if not raw:
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    try:
        body = parse_json(raw, "the body")
    except BadRequest as err:
        raise BadRequest(f"malformed JSON body: {err}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


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
        return f"{subject} must be an integer (ASCII digits)"
    if kind in ("string_too_long", "too_long"):
        return f"{subject} must be at most {schema.get('maxLength', '?')} characters"
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
