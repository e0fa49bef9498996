"""JavaScript value semantics for Jexl: truthiness, conversions, arithmetic and ordering.

Jexl expressions written for Refluxo run on JavaScript values; workflows moved between the
TypeScript and Python engines must compute the same results. Values here are JSON-like
Python data (``None``, ``bool``, ``int``, ``float``, ``str``, lists/tuples as arrays,
dicts as objects), plus :data:`UNDEFINED` for JavaScript's ``undefined``. Anything else
(another kind of mapping or sequence included) is an opaque object: truthy,
``"[object Object]"`` as a string, never looked into.

Numbers follow IEEE doubles as JavaScript's do: arithmetic runs in ``float`` (so
``2 ^ 10000`` is ``inf``, never a huge ``int``) and integral results below 2**53 come back as
``int``, so ``10 / 5`` is ``2`` and renders as ``"2"``. Only base-class methods of ``str``,
``int``, ``float``, ``list``, ``tuple`` and ``dict`` are ever called on values, never a
subclass's overrides (see :func:`kind` and the readers :func:`array_items`,
:func:`object_get`...).

Every operator whose cost depends on its operands (reading a long string, joining or
comparing arrays, searching) charges the current evaluation's meter
(:mod:`~refluxo.expressions.budget`) for that work, and every string it builds; operators on
numbers and short strings cost nothing beyond their expression node.

Equality and membership (``==``, ``in``), which build on these conversions, are in
:mod:`~refluxo.expressions.equality`.

One module on purpose, though over 400 lines: JavaScript's conversions and operators depend
on each other (``+`` converts or concatenates, ``<`` converts to numbers or compares
strings); split, the rules would be harder to check against the ECMAScript specification
they follow.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator
from typing import Any, Final, TypeVar

from refluxo.expressions.budget import Meter, meter
from refluxo.expressions.failures import LimitFailure
from refluxo.expressions.limits import CHARACTERS_PER_OPERATION, MAX_DATA_DEPTH, MAX_STRING_LENGTH
from refluxo.expressions.numeric import string_to_number
from refluxo.frozen import FrozenDict, FrozenList


class Undefined(enum.Enum):
    """The type of :data:`UNDEFINED`; an enum so it pickles and compares by identity."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined.UNDEFINED
"""JavaScript's ``undefined``: what a missing path evaluates to.

It never leaves an evaluation: results, and elements of array and object literals, turn it
into ``None``.
"""

NAN: Final = math.nan
INFINITY: Final = math.inf
_SAFE: Final = 2.0**53
_INT_STRING_LIMIT: Final = 10**21


class Kind(enum.Enum):
    """The JavaScript type a Python value stands for."""

    NULLISH = "nullish"
    BOOLEAN = "boolean"
    NUMBER = "number"
    STRING = "string"
    ARRAY = "array"
    OBJECT = "object"
    OPAQUE = "opaque"


# The kinds as module constants: reading an enum member through its class costs over 100 ns
# in CPython 3.11, and the operators compare kinds on every call.
NULLISH: Final = Kind.NULLISH
BOOLEAN: Final = Kind.BOOLEAN
NUMBER: Final = Kind.NUMBER
STRING: Final = Kind.STRING
ARRAY: Final = Kind.ARRAY
OBJECT: Final = Kind.OBJECT
OPAQUE: Final = Kind.OPAQUE

_KINDS: Final[dict[type, Kind]] = {
    type(None): NULLISH,
    Undefined: NULLISH,
    bool: BOOLEAN,
    int: NUMBER,
    float: NUMBER,
    str: STRING,
    list: ARRAY,
    tuple: ARRAY,
    FrozenList: ARRAY,
    dict: OBJECT,
    FrozenDict: OBJECT,
}


def kind(value: Any) -> Kind:
    """The JavaScript type of ``value``, from its Python type alone (no attribute is read).

    Subclasses of ``str``, ``int``, ``float``, ``list``, ``tuple`` and ``dict`` have their
    base's kind, and are read only through their base's methods (never an override); the
    engine's own lazy objects (see :func:`lazy_object`) are objects. Every other type,
    other mappings and sequences included, is opaque: expressions never call its code.
    """
    known = _KINDS.get(type(value))
    if known is not None:
        return known
    cls = type(value)
    if issubclass(cls, str):
        return STRING
    if issubclass(cls, int | float):
        return NUMBER
    if issubclass(cls, list | tuple):
        return ARRAY
    if issubclass(cls, dict):
        return OBJECT
    return OPAQUE


_T = TypeVar("_T")


def lazy_object(cls: type[_T]) -> type[_T]:
    """Class decorator: instances of exactly ``cls`` are JavaScript objects, read through
    ``lookup(key)`` (:data:`UNDEFINED` when missing), ``to_dict()``, ``len()`` and iteration
    over their keys. Reserved to the engine's own lazy views of ``nodes``
    (:mod:`~refluxo.expressions.views`): only their exact classes are registered."""
    _KINDS[cls] = OBJECT
    return cls


# --- arrays and objects, read through their base classes ----------------------------------

_EXACT_ARRAYS: Final[frozenset[type]] = frozenset((list, tuple, FrozenList))


def array_items(value: Any) -> list[Any] | tuple[Any, ...]:
    """The elements of an array: ``value`` itself when it is an exact ``list`` or ``tuple``
    (or a :class:`~refluxo.frozen.FrozenList`), else a copy made through the base class, so
    that a subclass's ``__iter__``, ``__len__`` or ``__getitem__`` never runs."""
    if type(value) in _EXACT_ARRAYS:
        return value  # type: ignore[no-any-return]
    if isinstance(value, list):
        return list.copy(value)
    return tuple(tuple.__iter__(value))


def array_length(value: Any) -> int:
    """An array's length, through its base class."""
    return list.__len__(value) if isinstance(value, list) else tuple.__len__(value)


def array_iterator(value: Any) -> Iterator[Any]:
    """An iterator over an array's elements, through its base class (no copy)."""
    return list.__iter__(value) if isinstance(value, list) else tuple.__iter__(value)


def object_get(value: Any, key: Any, default: Any = UNDEFINED) -> Any:
    """``value[key]`` of an object (``default`` when missing): through ``dict``'s own lookup
    for a dict (so no override, nor a ``defaultdict``'s ``__missing__``, runs), through
    ``lookup`` for a lazy view."""
    if isinstance(value, dict):
        return dict.get(value, key, default)
    if type(key) is not str:
        return default
    found = value.lookup(key)
    return default if found is UNDEFINED else found


def object_length(value: Any) -> int:
    """An object's number of entries, through ``dict`` for a dict."""
    return dict.__len__(value) if isinstance(value, dict) else len(value)


def object_items(value: Any) -> Iterable[tuple[Any, Any]]:
    """An object's ``(key, value)`` entries, through ``dict`` for a dict."""
    if isinstance(value, dict):
        return dict.items(value)
    return ((key, value.lookup(key)) for key in value)


def base_number(value: Any) -> int | float:
    """An ``int``/``float`` subclass instance as its exact base type (no overrides called)."""
    if type(value) is int or type(value) is float:
        return value
    if issubclass(type(value), int):
        return int.__int__(value)
    return float.__float__(value)


def base_string(value: Any) -> str:
    """A ``str`` subclass instance as an exact ``str`` (no overrides called)."""
    return value if type(value) is str else str.__str__(value)


# --- conversions ------------------------------------------------------------------------


def normalize(number: float) -> int | float:
    """Integral doubles below 2**53 as ``int`` (JavaScript prints them without ``.0``).

    Negative zero becomes ``0`` as well.
    """
    if number.is_integer() and -_SAFE < number < _SAFE:
        return int(number)
    return number


def int_to_float(number: int) -> float:
    """``float(number)``, saturating to infinity instead of raising on huge integers."""
    try:
        return float(number)
    except OverflowError:
        return INFINITY if number > 0 else -INFINITY


def to_number(value: Any) -> float:
    """JavaScript's ``ToNumber``: booleans 0/1, ``null`` 0, ``undefined`` NaN, arrays via
    their string form, numeric strings parsed, anything else NaN."""
    cls = type(value)
    if cls is int:
        return int_to_float(value)
    if cls is float:
        return value  # type: ignore[no-any-return]
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    if value is UNDEFINED:
        return NAN
    found = kind(value)
    if found is NUMBER:
        number = base_number(value)
        return int_to_float(number) if isinstance(number, int) else number
    if found is STRING:
        return string_to_number(base_string(value))
    if found is ARRAY:
        return string_to_number(join(value))
    return NAN


_FORMAT_COST: Final = 4
"""Operations charged per double printed: its shortest digits, then JavaScript's layout."""


def number_to_string(number: float) -> str:
    """JavaScript's ``Number.prototype.toString()`` for a double.

    Python's ``repr`` and JavaScript both produce the shortest digits that round-trip; only
    the layout differs (``1e+21``, ``1e-7``, ``0.000001``, ``100`` rather than ``100.0``).
    """
    if number != number:
        return "NaN"
    if number in (INFINITY, -INFINITY):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    meter().spend(_FORMAT_COST)
    text = repr(number)
    if "e" not in text:  # 1e-4 <= |number| < 1e16: JavaScript's layout, without ".0"
        return text[:-2] if text.endswith(".0") else text
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    # ``point``: how many digits of ``stripped`` precede the decimal point (JavaScript's n).
    point = len(whole) + (int(exponent) if exponent else 0) - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        body = digits + "0" * (point - count)
    elif 0 < point <= 21:
        body = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        body = "0." + "0" * -point + digits
    else:
        power = point - 1
        mark = "+" if power >= 0 else "-"
        head = digits if count == 1 else f"{digits[0]}.{digits[1:]}"
        body = f"{head}e{mark}{abs(power)}"
    return sign + body


def int_to_string(number: int) -> str:
    """An integer as JavaScript prints it; exact digits below 1e21, exponent form above."""
    if -_INT_STRING_LIMIT < number < _INT_STRING_LIMIT:
        return str(number)
    return number_to_string(int_to_float(number))


def to_string(value: Any) -> str:
    """JavaScript's ``String(value)``: ``"null"``, ``"undefined"``, ``"true"``, JavaScript
    number formatting, arrays comma-joined, objects ``"[object Object]"``."""
    cls = type(value)
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is int:
        return int_to_string(value)
    if cls is float:
        return number_to_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    found = kind(value)
    if found is STRING:
        return base_string(value)
    if found is NUMBER:
        number = base_number(value)
        return int_to_string(number) if isinstance(number, int) else number_to_string(number)
    if found is ARRAY:
        return join(value)
    return "[object Object]"


def join(items: Any) -> str:
    """``Array.prototype.join()``: elements comma-separated, ``null``/``undefined`` (and
    opaque objects, which read as ``undefined``) empty.

    Bounded by :data:`MAX_DATA_DEPTH` (which also stops self-containing lists) and by
    :data:`MAX_STRING_LENGTH` as the string grows, so shared sub-lists cannot amplify it;
    every element visited is charged as an operation, the result as a string built.
    """
    current = meter()
    joined = _join(items, 0, current)
    current.build(len(joined))
    return joined


_JOIN_COST: Final = 4
"""Operations charged per element joined, before joining (an integer's digits included)."""
_SLOW_JOIN_COST: Final = 16
"""Further operations per element of any other kind (a float's shortest digits, mainly)."""


def _join(items: Any, depth: int, current: Meter) -> str:
    if depth >= MAX_DATA_DEPTH:
        raise LimitFailure(
            f"cannot convert an array nested deeper than {MAX_DATA_DEPTH} levels to a string"
        )
    current.spend(_JOIN_COST * array_length(items) + 1)
    items = array_items(items)
    types = set(map(type, items))
    if types <= _STRINGS or (types <= _INTEGERS and _small_integers(items)):
        return _join_plain(items, types <= _STRINGS)
    parts: list[str] = []
    total = 0
    for item in items:
        cls = type(item)
        if cls is str:
            part = item
        elif cls is int and -_INT_STRING_LIMIT < item < _INT_STRING_LIMIT:
            part = str(item)
        else:
            current.spend(_SLOW_JOIN_COST)
            found = kind(item)
            if found is NULLISH or found is OPAQUE:
                part = ""
            elif found is ARRAY:
                part = _join(item, depth + 1, current)
            else:
                part = to_string(item)
        total += len(part) + 1
        if total > MAX_STRING_LENGTH + 1:
            raise string_too_long()
        parts.append(part)
    return ",".join(parts)


_STRINGS: Final = frozenset({str})
_INTEGERS: Final = frozenset({int})
_CHUNK: Final = 4_096


def _small_integers(items: Any) -> bool:
    """Whether integers ``items`` all print as their digits (below 1e21 in magnitude)."""
    return not items or (min(items) > -_INT_STRING_LIMIT and max(items) < _INT_STRING_LIMIT)


def _join_plain(items: Any, strings: bool) -> str:
    """Join a list of exact strings, or of small exact integers, with C loops: chunk by
    chunk, so the length limit is checked before much more than it is built."""
    parts: list[str] = []
    total = -1
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        part = ",".join(chunk if strings else map(str, chunk))
        total += len(part) + 1
        if total > MAX_STRING_LENGTH:
            raise string_too_long()
        parts.append(part)
    return ",".join(parts)


def display(value: Any) -> str:
    """How a value is interpolated into text: Refluxo's ``String(result ?? "")``."""
    if value is None or value is UNDEFINED:
        return ""
    return to_string(value)


def string_too_long() -> LimitFailure:
    """The failure for a string that would exceed :data:`MAX_STRING_LENGTH`."""
    return LimitFailure(f"string result would be longer than {MAX_STRING_LENGTH} characters")


def to_primitive(value: Any) -> Any:
    """JavaScript's ``ToPrimitive`` for operators: arrays and objects become strings."""
    if type(value) in _PRIMITIVE_TYPES:
        return value
    if kind(value) in (ARRAY, OBJECT, OPAQUE):
        return to_string(value)
    return value


_PRIMITIVE_TYPES: Final[frozenset[type]] = frozenset({type(None), Undefined, bool, int, float, str})


def truthy(value: Any) -> bool:
    """JavaScript truthiness: ``""``, 0, NaN, ``None``, ``undefined`` and ``false`` are falsy;
    every container (even an empty one) and every other object is truthy."""
    cls = type(value)
    if cls is bool:
        return value  # type: ignore[no-any-return]
    if value is None or value is UNDEFINED:
        return False
    if cls is int:
        return value != 0  # type: ignore[no-any-return]
    if cls is str:
        return value != ""  # type: ignore[no-any-return]
    if cls is float:
        return value == value and value != 0.0  # type: ignore[no-any-return]
    found = kind(value)
    if found is STRING:
        return str.__len__(value) > 0
    if found is NUMBER:
        number = base_number(value)
        return number == number and number != 0
    return True


# --- arithmetic -------------------------------------------------------------------------


def _is_numeric_primitive(value: Any) -> bool:
    return kind(value) in (NUMBER, BOOLEAN, NULLISH)


def add(left: Any, right: Any) -> Any:
    """``+``: string concatenation when either side is (or converts to) a string."""
    if type(left) is int and type(right) is int:
        result = left + right
        if -_SAFE < result < _SAFE and -_SAFE < left < _SAFE and -_SAFE < right < _SAFE:
            return result
    if _is_numeric_primitive(left) and _is_numeric_primitive(right):
        return normalize(to_number(left) + to_number(right))
    first, second = to_string(left), to_string(right)
    length = len(first) + len(second)
    if length > MAX_STRING_LENGTH:
        raise string_too_long()
    meter().build(length)
    return first + second


def subtract(left: Any, right: Any) -> int | float:
    """``-`` on numbers (operands converted with ``ToNumber``)."""
    if type(left) is int and type(right) is int:
        result = left - right
        if -_SAFE < result < _SAFE and -_SAFE < left < _SAFE and -_SAFE < right < _SAFE:
            return result
    return normalize(to_number(left) - to_number(right))


def multiply(left: Any, right: Any) -> int | float:
    """``*`` on numbers."""
    if (
        type(left) is int
        and type(right) is int
        and -_SAFE < left < _SAFE
        and -_SAFE < right < _SAFE
    ):
        result = left * right
        if -_SAFE < result < _SAFE:
            return result
    return normalize(to_number(left) * to_number(right))


def _quotient(left: Any, right: Any) -> float:
    dividend, divisor = to_number(left), to_number(right)
    if divisor == 0:
        if dividend != dividend or dividend == 0:
            return NAN
        return math.copysign(INFINITY, dividend) * math.copysign(1.0, divisor)
    return dividend / divisor


def divide(left: Any, right: Any) -> int | float:
    """``/``: division by zero gives ``inf``, ``-inf`` or NaN, as in JavaScript."""
    return normalize(_quotient(left, right))


def floor_divide(left: Any, right: Any) -> int | float:
    """``//``: Jexl's ``Math.floor(left / right)``."""
    quotient = _quotient(left, right)
    if math.isfinite(quotient) and abs(quotient) < _SAFE:
        quotient = float(math.floor(quotient))
    return normalize(quotient)


def remainder(left: Any, right: Any) -> int | float:
    """``%``: JavaScript's remainder, which takes the dividend's sign (``math.fmod``)."""
    try:
        return normalize(math.fmod(to_number(left), to_number(right)))
    except ValueError:
        return NAN


def power(left: Any, right: Any) -> int | float:
    """``^``: ``Math.pow``, overflowing to infinity and never producing complex numbers."""
    base, exponent = to_number(left), to_number(right)
    if abs(base) == 1 and not math.isfinite(exponent):
        return NAN
    odd = exponent.is_integer() and abs(exponent) < _SAFE and int(exponent) % 2 == 1
    try:
        return normalize(math.pow(base, exponent))
    except OverflowError:
        return -INFINITY if base < 0 and odd else INFINITY
    except ValueError:
        if base == 0 and exponent < 0:
            negative = math.copysign(1.0, base) < 0 and odd
            return -INFINITY if negative else INFINITY
        return NAN


# --- comparison -------------------------------------------------------------------------


def _ordered(left: Any, right: Any) -> tuple[Any, Any]:
    """The operands of ``< <= > >=``: two strings, or two floats (NaN compares false)."""
    first, second = to_primitive(left), to_primitive(right)
    if (type(first) is str and type(second) is str) or (
        kind(first) is STRING and kind(second) is STRING
    ):
        first, second = base_string(first), base_string(second)
        charge_comparison(first, second)
        return first, second
    return to_number(first), to_number(second)


def charge_comparison(first: str, second: str) -> None:
    """Charge comparing two strings: a pass over the shorter one (only long ones cost)."""
    shorter = min(len(first), len(second))
    if shorter >= CHARACTERS_PER_OPERATION:
        meter().read(shorter)


def less(left: Any, right: Any) -> bool:
    """``<``"""
    if type(left) is int and type(right) is int:
        return left < right
    first, second = _ordered(left, right)
    return first < second  # type: ignore[no-any-return]


def less_equal(left: Any, right: Any) -> bool:
    """``<=``"""
    if type(left) is int and type(right) is int:
        return left <= right
    first, second = _ordered(left, right)
    return first <= second  # type: ignore[no-any-return]


def greater(left: Any, right: Any) -> bool:
    """``>``"""
    if type(left) is int and type(right) is int:
        return left > right
    first, second = _ordered(left, right)
    return first > second  # type: ignore[no-any-return]


def greater_equal(left: Any, right: Any) -> bool:
    """``>=``"""
    if type(left) is int and type(right) is int:
        return left >= right
    first, second = _ordered(left, right)
    return first >= second  # type: ignore[no-any-return]
