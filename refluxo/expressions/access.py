"""The sandbox: the only ways an expression can read data.

An expression reaches data through exactly three operations: a mapping's key lookup, a
list's, tuple's or string's index, and ``length``. No attribute of a value is ever read
(there is no ``getattr`` in this package; only the engine's own result records are read,
by fixed field names, in :mod:`~refluxo.expressions.views`), so ``__class__``,
``__globals__`` or ``constructor`` are plain keys that are usually missing. No method of the
data is called either: a ``dict``, ``list`` or ``tuple`` subclass is read through its base
class (its overrides never run), and any other mapping or sequence is opaque. Values that are
not JSON-like (a function, a class, a model instance...) read as ``undefined``: an
expression can neither return them nor look inside them.

A missing path reads as Jexl reads it: dot access on ``undefined`` or ``null`` is
``undefined``, but bracket access on them (``missing[0]``, ``missing["key"]``), and dot
access on an array whose first element is ``undefined`` or ``null``, read a property of
``undefined`` or ``null`` in JavaScript, and fail with JavaScript's ``TypeError``
(:func:`unreadable`).
"""

from __future__ import annotations

from typing import Any, Final

from refluxo.expressions.failures import Failure, shown
from refluxo.expressions.jsvalues import (
    ARRAY,
    NUMBER,
    OBJECT,
    STRING,
    UNDEFINED,
    Undefined,
    base_number,
    base_string,
    kind,
    object_get,
    to_string,
)
from refluxo.expressions.views import NodesView, NodeView
from refluxo.frozen import FrozenDict, FrozenList

PLAIN_TYPES: Final[frozenset[type]] = frozenset(
    {
        type(None),
        Undefined,
        bool,
        int,
        float,
        str,
        list,
        tuple,
        dict,
        FrozenDict,
        FrozenList,
        NodesView,
        NodeView,
    }
)
"""Types that need no sanitizing: the fast path of every read."""

RESULT_TYPES: Final[frozenset[type]] = PLAIN_TYPES - {Undefined, NodesView, NodeView}
"""Types :func:`export` returns unchanged."""

_CANONICAL_INDEX_DIGITS: Final = frozenset("0123456789")


def sanitize(value: Any) -> Any:
    """``value`` as expressions may see it: JSON-like data, or :data:`UNDEFINED`.

    Subclasses of ``str``, ``int`` and ``float`` (enums...) become their exact base type;
    dicts, lists and tuples (subclasses included, which are read through their base class)
    are kept; every other object, another kind of mapping or sequence included, becomes
    ``undefined``.
    """
    if type(value) in PLAIN_TYPES:
        return value
    found = kind(value)
    if found is STRING:
        return base_string(value)
    if found is NUMBER:
        return base_number(value)
    if found in (ARRAY, OBJECT):
        return value
    return UNDEFINED


def export(value: Any) -> Any:
    """A value stored in an array or object an expression builds (or a filter keeps):
    ``undefined`` becomes ``None`` and the lazy ``nodes`` views become plain dicts;
    everything else is kept as is (results are made JSON by
    :func:`~refluxo.expressions.results.to_json`)."""
    if value is UNDEFINED:
        return None
    cls = type(value)
    if cls is NodeView or cls is NodesView:
        return value.to_dict()
    return value


def _array_index(key: Any) -> int | None:
    """``key`` as an array index, the way JavaScript reads ``array[key]``; else ``None``."""
    found = kind(key)
    if found is NUMBER:
        number = base_number(key)
        if isinstance(number, float):
            if not number.is_integer():
                return None
            number = int(number)
        return number if number >= 0 else None
    if found is STRING:
        text = base_string(key)
        if not text or len(text) >= 17:  # checked first: a key may be a megabyte long
            return None
        digits_only = all(char in _CANONICAL_INDEX_DIGITS for char in text)
        if digits_only and (text == "0" or not text.startswith("0")):
            return int(text)
    return None


def property_key(key: Any) -> str:
    """``key`` as an object property name: JavaScript converts keys to strings."""
    return base_string(key) if kind(key) is STRING else to_string(key)


def _length(sequence: Any) -> int:
    """The length of a list, tuple or string, through the base class (never an override)."""
    if issubclass(type(sequence), str):
        return str.__len__(sequence)
    if issubclass(type(sequence), list):
        return list.__len__(sequence)
    return tuple.__len__(sequence)


def _at(sequence: Any, index: int) -> Any:
    if issubclass(type(sequence), str):
        return str.__getitem__(sequence, index)
    if issubclass(type(sequence), list):
        return list.__getitem__(sequence, index)
    return tuple.__getitem__(sequence, index)


def _from_sequence(sequence: Any, key: Any) -> Any:
    if kind(key) is STRING and base_string(key) == "length":
        return _length(sequence)
    index = _array_index(key)
    if index is None or index >= _length(sequence):
        return UNDEFINED
    return _at(sequence, index)


def unreadable(value: Any, key: Any) -> Failure:
    """The failure of reading property ``key`` of ``value`` (``undefined`` or ``null``),
    worded as JavaScript (V8) words its ``TypeError``: the key as ``String(key)``, an
    object as ``#<Object>``, no key at all for an array. A key longer than a message
    should hold is shortened."""
    subject = "null" if value is None else "undefined"
    found = kind(key)
    if found is ARRAY:
        reading = ""
    elif found is OBJECT:
        reading = " (reading '#<Object>')"
    else:
        reading = f" (reading '{shown(property_key(key))}')"
    return Failure(f"TypeError: Cannot read properties of {subject}{reading}")


def get_property(value: Any, name: str) -> Any:
    """``value.name`` (dot access), sanitized.

    As in Jexl, dot access on an array reads the property of its first element (so
    ``items[.ok].name`` is the first match's name; an empty array, or one starting with
    ``null``, fails as reading a property of ``undefined`` or ``null`` does), except
    ``length``, which is the array's length (a deliberate difference: Jexl would read the
    first element's length).
    """
    found = kind(value)
    if found is OBJECT:
        return sanitize(object_get(value, name))
    if found is ARRAY:
        if name == "length":
            return _length(value)
        first = _at(value, 0) if _length(value) else UNDEFINED
        if first is UNDEFINED or first is None:
            raise unreadable(first, name)
        first = sanitize(first)
        return UNDEFINED if first is UNDEFINED else get_item(first, name)
    if found is STRING:
        return _length(value) if name == "length" else UNDEFINED
    return UNDEFINED


def get_item(value: Any, key: Any) -> Any:
    """``value[key]`` (bracket access with a computed key), sanitized.

    A boolean key returns ``value`` itself when true and ``undefined`` when false, as Jexl's
    static filter does. Any other key on ``undefined`` or ``null`` raises
    :func:`unreadable`'s failure; on a number or a boolean it reads ``undefined``.
    """
    if key is True:
        return value
    if key is False:
        return UNDEFINED
    found = kind(value)
    if found is OBJECT:
        return sanitize(object_get(value, property_key(key)))
    if found is ARRAY:
        return sanitize(_from_sequence(value, key))
    if found is STRING:
        return _from_sequence(value, key)
    if value is UNDEFINED or value is None:
        raise unreadable(value, key)
    return UNDEFINED
