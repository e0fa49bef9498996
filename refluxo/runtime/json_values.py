"""Whether a value given to the runtime from Python can be stored as JSON, and why not.

A run's input and a resume's payload are stored as JSON and become a node's
``external_payload``; over HTTP they arrive as parsed JSON and are fine by construction,
but a library caller may hand :meth:`~refluxo.runtime.service.RunService.start` anything.
Checked up front, a set, bytes, ``NaN`` or a string holding a lone surrogate is refused
with a :class:`~refluxo.runtime.errors.BadRequest` naming where it is, instead of a raw
``TypeError``/``UnicodeEncodeError`` from the store, a ``RecursionError`` from a value
nested thousands deep, or a run stored with an input it cannot read back.
"""

from __future__ import annotations

import math
from typing import Any

from refluxo.runtime.errors import BadRequest

MAX_VALUE_DEPTH = 63
"""How deep an input or payload may nest: what the HTTP API accepts inside its body
(``refluxo.api.parsing.MAX_JSON_DEPTH`` levels, the body itself being one)."""


def check_json_value(value: Any, what: str) -> None:
    """Raise :class:`BadRequest` unless ``value`` is plain JSON data.

    Plain JSON data: ``None``, ``bool``, ``int``, finite ``float``, ``str`` (encodable as
    UTF-8), and lists, tuples and dicts with string keys of those, at most
    :data:`MAX_VALUE_DEPTH` containers deep. ``what`` names the value in the message
    ("the input"). Iterative: no depth of nesting reaches Python's recursion limit.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                _refuse(what, where, f"{item!r} is not a JSON number")
            continue
        if isinstance(item, str):
            if not item.isascii():
                _check_text(item, what, where)
            continue
        if isinstance(item, list | tuple | dict):
            if depth >= MAX_VALUE_DEPTH:
                _refuse(what, where, f"nests more than {MAX_VALUE_DEPTH} arrays and objects deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        _refuse(what, where, f"has a key {key!r} that is not a string")
                    _check_text(key, what, where)
                    stack.append((child, f"{where}.{key}", depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
            continue
        _refuse(what, where, f"is a {type(item).__name__}, which JSON cannot hold")


def _check_text(text: str, what: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        _refuse(what, where, f"holds a lone surrogate ({err.object[err.start]!r}), not text")


def _refuse(what: str, where: str, problem: str) -> None:
    place = f"{what} at {where.lstrip('.')}" if where else what
    raise BadRequest(f"{place} {problem}; give JSON data (dict, list, str, number, bool, None)")
