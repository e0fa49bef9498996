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

from refluxo.expressions.budget import meter
from refluxo.expressions.failures import LimitFailure
from refluxo.expressions.jsvalues import (
    ARRAY,
    BOOLEAN,
    NULLISH,
    NUMBER,
    OBJECT,
    STRING,
    Kind,
    base_number,
    base_string,
    charge_comparison,
    kind,
    to_number,
    to_string,
)
from refluxo.expressions.limits import CHARACTERS_PER_OPERATION, MAX_COMPARISON_STEPS
from refluxo.frozen import FrozenDict


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
    value visited is charged as :data:`_COMPARISON_COST` operations, every container opened
    :data:`_CONTAINER_COST` more.
    """
    allowance = [MAX_COMPARISON_STEPS, 0]
    equal = _compare_structures(left, right, allowance)
    _charge(allowance, MAX_COMPARISON_STEPS)
    return equal


_COMPARISON_COST: Final = 4
"""Operations charged per value a structural comparison visits."""
_CONTAINER_COST: Final = 20
"""Further operations per array or object a comparison opens."""
_EXACT_PRIMITIVES: Final[frozenset[type]] = frozenset({type(None), bool, int, float, str})
_EXACT_OBJECTS: Final[frozenset[type]] = frozenset((dict, FrozenDict))
_MISSING: Final = object()
"""What a key missing from the second object compares as: unequal to any value."""


def _charge(allowance: list[int], allowed: int) -> None:
    """Charge the values visited and containers opened that ``allowance`` recorded."""
    meter().spend(_COMPARISON_COST * (allowed - allowance[0]) + _CONTAINER_COST * allowance[1])


def _compare_structures(left: Any, right: Any, allowance: list[int]) -> bool:
    """Whether ``left`` and ``right`` are strictly equal, taking one from ``allowance[0]``
    per value visited (raising :class:`LimitFailure` when it runs out) and adding the
    containers opened to ``allowance[1]``.

    The stack holds iterators over the pairs still to compare, so a comparison's memory is
    its depth, not the size of the arrays it walks.
    """
    remaining, opened = allowance
    stack: list[Iterator[tuple[Any, Any]]] = [iter(((left, right),))]
    equal = True
    while stack:
        pair = next(stack[-1], None)
        if pair is None:
            stack.pop()
            continue
        first, second = pair
        remaining -= 1
        if remaining < 0:
            raise LimitFailure(f"comparison visits more than {MAX_COMPARISON_STEPS} values")
        cls = type(first)
        if cls is type(second) and cls in _EXACT_PRIMITIVES:  # JSON leaves: the fast path
            if first is second and cls is not float:
                continue
            if cls is str and _same_string(first, second):
                continue
            if cls is not str and first == second:  # NaN differs from itself, as in JS
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
            equal = _same_string(base_string(first), base_string(second))
        elif found is ARRAY or found is OBJECT:
            opened += 1
            equal = len(first) == len(second)
            if found is ARRAY:
                stack.append(zip(first, second, strict=True))
            else:
                stack.append(_object_pairs(first, second))
        else:  # distinct booleans, null vs undefined, distinct opaque objects
            equal = False
        if not equal:
            break
    allowance[0], allowance[1] = remaining, opened
    return equal


def _object_pairs(first: Any, second: Any) -> Iterator[tuple[Any, Any]]:
    """``(first[key], second[key])`` for each key of ``first``; :data:`_MISSING` stands for
    a key ``second`` lacks. Plain dicts are paired by C loops."""
    if type(first) in _EXACT_OBJECTS and type(second) in _EXACT_OBJECTS:
        return zip(dict.values(first), map(second.get, first, repeat(_MISSING)), strict=False)
    if isinstance(first, dict) and isinstance(second, dict):
        return ((value, dict.get(second, key, _MISSING)) for key, value in dict.items(first))
    return ((first[key], second.get(key, _MISSING)) for key in first)


def contains(needle: Any, haystack: Any) -> bool:
    """``in``: a substring of a string, an element of an array (compared as
    :func:`strict_equal`), or a key of an object (a deliberate addition: Jexl returns false).
    Anything else is false.

    A search charges a pass over the string (Python's search is linear in the haystack); an
    array scan charges one operation per element, before it starts.
    """
    found = kind(haystack)
    if found is STRING:
        text, part = base_string(haystack), to_string(needle)
        meter().read(len(text) + len(part))
        return part in text
    if found is ARRAY:
        wanted = kind(needle)
        if wanted is ARRAY or wanted is OBJECT:
            meter().spend(_STRUCTURE_SCAN_COST * len(haystack) + 1)
            return _find_structure(needle, haystack)
        meter().spend(len(haystack) + 1)
        return _scan(needle, wanted, haystack)
    if found is OBJECT:
        key = base_string(needle) if kind(needle) is STRING else to_string(needle)
        return key in haystack
    return False


_STRUCTURE_SCAN_COST: Final = 4
"""Operations charged per element when looking an array or object up in an array (each
element starts a comparison), besides the values the comparisons visit."""


def _find_structure(needle: Any, haystack: Any) -> bool:
    """Whether an element of ``haystack`` is structurally equal to container ``needle``; the
    comparisons share one :data:`MAX_COMPARISON_STEPS` allowance."""
    allowance = [MAX_COMPARISON_STEPS, 0]
    found = False
    for item in haystack:
        if _compare_structures(needle, item, allowance):
            found = True
            break
    _charge(allowance, MAX_COMPARISON_STEPS)
    return found


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
