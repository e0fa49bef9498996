"""JavaScript equality and membership for Jexl: ``==``, ``!=``, strict equality and ``in``.

Built on the conversions of :mod:`~refluxo.expressions.jsvalues`: ``==`` converts between
numbers, strings and booleans as JavaScript's loose equality does. Arrays and objects
compare structurally (a deliberate difference from JavaScript, documented in
:mod:`refluxo.expressions`), with an explicit stack bounded by
:data:`~refluxo.expressions.limits.MAX_COMPARISON_STEPS`.

These are the operators whose cost grows with the data (a membership test scans an array, a
comparison walks two structures, a search reads a string), so each charges the current
evaluation's meter (:mod:`~refluxo.expressions.budget`) for the values it visits; exact
JSON values take fast paths, and subclasses compare through their base types (no override
runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import repeat
from typing import Any, Final

from refluxo.expressions.budget import Meter, meter
from refluxo.expressions.failures import LimitFailure
from refluxo.expressions.jsvalues import (
    ARRAY,
    BOOLEAN,
    NULLISH,
    NUMBER,
    OBJECT,
    STRING,
    Kind,
    array_items,
    array_iterator,
    array_length,
    base_number,
    base_string,
    charge_comparison,
    kind,
    object_get,
    object_items,
    object_length,
    to_number,
    to_string,
)
from refluxo.expressions.limits import CHARACTERS_PER_OPERATION, MAX_COMPARISON_STEPS
from refluxo.frozen import FrozenDict, FrozenList


def loose_equal(left: Any, right: Any) -> bool:
    """``==``: JavaScript's loose equality for primitives.

    ``null == undefined``; a number equals a numeric string; booleans compare as 0/1; an
    array or object compared with a primitive compares its string form. Deliberate
    difference: two arrays or objects compare structurally (see :func:`strict_equal`), not
    by identity, because Python data has no meaningful identity for expression authors.
    """
    cls = type(left)
    if cls is type(right):  # JSON values of one type: the fast paths
        if cls is int or cls is float:
            return left == right  # type: ignore[no-any-return]
        if cls is str:
            return _same_string(left, right)
    first, second = kind(left), kind(right)
    if first is NULLISH or second is NULLISH:
        return first is second
    if first is BOOLEAN:
        return loose_equal(1 if left else 0, right)
    if second is BOOLEAN:
        return loose_equal(left, 1 if right else 0)
    if first is second:
        if first is NUMBER:
            return base_number(left) == base_number(right)
        if first is STRING:
            return _same_string(base_string(left), base_string(right))
        return strict_equal(left, right)
    containers = (ARRAY, OBJECT)
    if first in containers and second in containers:
        return False
    if first in containers and second in (NUMBER, STRING):
        return loose_equal(to_string(left), right)
    if second in containers and first in (NUMBER, STRING):
        return loose_equal(left, to_string(right))
    if (first is NUMBER and second is STRING) or (first is STRING and second is NUMBER):
        return to_number(left) == to_number(right)
    return False


def _same_string(first: str, second: str) -> bool:
    """``first == second``, charged when both are long and of one length (only then does
    Python compare characters)."""
    if len(first) == len(second) and first is not second:
        charge_comparison(first, second)
    return first == second


def strict_equal(left: Any, right: Any) -> bool:
    """``===`` for primitives; arrays and objects compare structurally, element by element.

    Iterative, and bounded by :data:`MAX_COMPARISON_STEPS` (which also stops cycles); every
    value visited is charged :data:`_COMPARISON_COST` operations as it is visited, every
    container opened :data:`_CONTAINER_COST` more.
    """
    return _compare_structures(left, right, [MAX_COMPARISON_STEPS], meter())


_COMPARISON_COST: Final = 4
"""Operations charged per value a structural comparison visits."""
_CONTAINER_COST: Final = 20
"""Further operations per array or object a comparison opens."""
_EXACT_PRIMITIVES: Final[frozenset[type]] = frozenset({type(None), bool, int, float, str})
_EXACT_OBJECTS: Final[frozenset[type]] = frozenset((dict, FrozenDict))
_EXACT_ARRAYS: Final[frozenset[type]] = frozenset((list, tuple, FrozenList))
_SHIFT: Final = CHARACTERS_PER_OPERATION.bit_length() - 1
_MISSING: Final = object()
"""What a key missing from the second object compares as: unequal to any value."""


def _compare_structures(left: Any, right: Any, allowance: list[int], current: Meter) -> bool:
    """Whether ``left`` and ``right`` are strictly equal, taking one from ``allowance[0]``
    per value visited (raising :class:`LimitFailure` when it runs out) and charging
    ``current`` as each value is visited, so that the work budget stops a comparison (or a
    scan of many comparisons) as soon as it is spent.

    The charges go to a local copy of the meter's remaining operations, settled when the
    comparison ends (and before reading a lazy view, which may charge the meter itself).
    The stack holds iterators over the pairs still to compare, so a comparison's memory is
    its depth, not the size of the arrays it walks.
    """
    remaining = allowance[0]
    budget = current.operations
    stack: list[Iterator[tuple[Any, Any]]] = [iter(((left, right),))]
    equal = True
    while stack:
        pair = next(stack[-1], None)
        if pair is None:
            stack.pop()
            continue
        first, second = pair
        remaining -= 1
        budget -= _COMPARISON_COST
        if remaining < 0 or budget < 0:
            break
        cls = type(first)
        if cls is type(second) and cls in _EXACT_PRIMITIVES:  # JSON leaves: the fast path
            if first is second and cls is not float:
                continue
            if cls is str:
                size = len(first)
                if size == len(second):
                    budget -= size >> _SHIFT  # only then does Python compare characters
                    if first == second:
                        continue
            elif first == second:  # NaN differs from itself, as in JavaScript
                continue
            equal = False
            break
        found = kind(first)
        if first is second and found is not NUMBER:
            continue
        if found is not kind(second):
            equal = False
        elif found is NUMBER:
            equal = base_number(first) == base_number(second)
        elif found is STRING:
            text, other = base_string(first), base_string(second)
            if len(text) == len(other):
                budget -= len(text) >> _SHIFT
            equal = text == other
        elif found is ARRAY:
            budget -= _CONTAINER_COST
            equal = array_length(first) == array_length(second)
            stack.append(zip(array_iterator(first), array_iterator(second), strict=False))
        elif found is OBJECT:
            budget -= _CONTAINER_COST
            if type(first) in _EXACT_OBJECTS and type(second) in _EXACT_OBJECTS:
                equal = len(first) == len(second)
                pairs = map(second.get, first, repeat(_MISSING))
                stack.append(zip(dict.values(first), pairs, strict=True))
            else:  # a subclass, or a lazy view (which may charge the meter when read)
                current.settle(budget)
                equal = object_length(first) == object_length(second)
                if equal:
                    stack.append(iter(_object_pairs(first, second)))
                budget = current.operations
        else:  # distinct booleans, null vs undefined, distinct opaque objects
            equal = False
        if not equal:
            break
    allowance[0] = remaining
    current.settle(budget)  # raises the work limit if the comparison spent the budget
    if remaining < 0:
        raise LimitFailure(f"comparison visits more than {MAX_COMPARISON_STEPS} values")
    return equal


def _object_pairs(first: Any, second: Any) -> list[tuple[Any, Any]]:
    """``(first[key], second[key])`` for each key of ``first`` (:data:`_MISSING` for a key
    ``second`` lacks), read through ``dict`` or the lazy view's ``lookup``."""
    return [(value, object_get(second, key, _MISSING)) for key, value in object_items(first)]


def contains(needle: Any, haystack: Any) -> bool:
    """``in``: a substring of a string, an element of an array (compared as
    :func:`strict_equal`), or a key of an object (a deliberate addition: Jexl returns false).
    Anything else is false.

    A search charges a pass over the string (Python's search is linear in the haystack); an
    array scan charges one operation per element before it starts (four when looking for an
    array or object, whose comparisons charge the values they visit as they go).
    """
    found = kind(haystack)
    if found is STRING:
        text, part = base_string(haystack), to_string(needle)
        meter().read(len(text) + len(part))
        return part in text
    if found is ARRAY:
        wanted = kind(needle)
        if wanted is ARRAY or wanted is OBJECT:
            return _find_structure(needle, wanted, haystack)
        meter().spend(array_length(haystack) + 1)
        return _scan(needle, wanted, array_items(haystack))
    if found is OBJECT:
        key = base_string(needle) if kind(needle) is STRING else to_string(needle)
        return object_get(haystack, key, _MISSING) is not _MISSING
    return False


_STRUCTURE_SCAN_COST: Final = 4
"""Operations charged per element when looking an array or object up in an array, before
the scan, besides the values the comparisons visit."""


def _find_structure(needle: Any, wanted: Kind, haystack: Any) -> bool:
    """Whether an element of ``haystack`` is structurally equal to container ``needle``
    (of kind ``wanted``); the comparisons share one :data:`MAX_COMPARISON_STEPS` allowance
    and charge the meter as they go.

    An exact JSON element that cannot be equal (a primitive, a container of the other kind
    or of another length) is skipped without starting a comparison.
    """
    current = meter()
    current.spend(_STRUCTURE_SCAN_COST * array_length(haystack) + 1)
    items = array_items(haystack)
    if wanted is ARRAY:
        same, other, size = _EXACT_ARRAYS, _EXACT_OBJECTS, array_length(needle)
    else:
        same, other, size = _EXACT_OBJECTS, _EXACT_ARRAYS, object_length(needle)
    allowance = [MAX_COMPARISON_STEPS]
    for item in items:
        cls = type(item)
        if cls in same:
            if len(item) != size:
                continue
        elif cls in _EXACT_PRIMITIVES or cls in other:
            continue
        if _compare_structures(needle, item, allowance, current):
            return True
    return False


def _scan(needle: Any, wanted: Kind, haystack: Any) -> bool:
    """Whether primitive ``needle`` (of kind ``wanted``) is strictly equal to an element.

    Exact ``str``, ``int`` and ``float`` elements (all of JSON data) take the fast branch;
    subclasses compare through their base type, so no override runs.
    """
    if wanted is STRING:
        text = base_string(needle)
        size = len(text)
        for item in haystack:
            if type(item) is str:
                if (
                    len(item) == size
                    and (size < CHARACTERS_PER_OPERATION or _read(size))
                    and item == text
                ):
                    return True
            elif kind(item) is STRING and _same_string(text, base_string(item)):
                return True
        return False
    if wanted is NUMBER:
        number = base_number(needle)
        for item in haystack:
            cls = type(item)
            if cls is int or cls is float:
                if item == number:
                    return True
            elif kind(item) is NUMBER and base_number(item) == number:
                return True
        return False
    # booleans, null and undefined are singletons; opaque objects compare by identity
    return any(item is needle for item in haystack)


def _read(characters: int) -> bool:
    """Charge reading ``characters`` characters; true, so it can guard a comparison."""
    meter().read(characters)
    return True
