"""Expression results as JSON values: the only thing an evaluation hands back.

A result can be data the host supplied (``globals``, outputs of in-process executors, what
registered transforms return), and such data may hold any Python object. Inside an
expression an object that is not JSON-like already reads as ``undefined``; the result
follows the same rule, the way JavaScript's ``JSON.stringify`` treats ``undefined``:

* ``None``, booleans, numbers and strings are kept; a subclass of ``str``, ``int`` or
  ``float`` (an enum member...) becomes its exact base value;
* a number JSON cannot hold becomes ``None``, as ``JSON.stringify`` writes ``null``: NaN and
  the infinities (``{{ 1/0 }}``), and an integer too large for a double (JavaScript would
  hold it as ``Infinity``); every other integer keeps its exact value, as everywhere else
  in the engine;
* lists and tuples become lists, dicts become dicts (subclasses read through their base
  class, so no override runs); the lazy ``nodes`` views become plain dicts; any other
  mapping or sequence is an object JSON cannot hold, like the next ones;
* an object entry whose key is not a string (invisible to expressions, whose keys are
  strings) or whose value is not JSON-like (a module, a function, a class, a model
  instance...) is left out; such an array element becomes ``None``, as does such a whole
  result;
* a container that contains itself (possible only in Python data) is refused with an
  ``ExpressionError`` naming where it recurs.

Containers made only of JSON values are returned as they are (``{{ input.items }}`` is the
caller's own list, not a copy); only a container needing a change is copied, and one
shared in several places is converted once. The walk is iterative (no recursion limit
whatever the nesting) and charged to the evaluation's meter: a quarter operation per value
of a container of JSON scalars (checked with C loops; another quarter if it holds numbers),
six per entry of any other container (and eight per container checked), and the copies as
values built.
"""

from __future__ import annotations

import math
import threading
from itertools import compress
from operator import is_
from typing import Any, Final

from refluxo.expressions.budget import Meter
from refluxo.expressions.failures import Failure
from refluxo.expressions.jsvalues import (
    ARRAY,
    NUMBER,
    OBJECT,
    STRING,
    base_number,
    base_string,
    kind,
)
from refluxo.expressions.views import NodesView, NodeView
from refluxo.frozen import FrozenDict, FrozenList

JSON_SCALARS: Final[frozenset[type]] = frozenset({type(None), bool, int, float, str})
"""Types of JSON scalars (a number may still need a check: see :func:`json_number`)."""
JSON_LEAVES: Final[frozenset[type]] = frozenset({type(None), bool, str})
"""Types of results that need no conversion (numbers need a check)."""
_NUMBERS: Final[frozenset[type]] = frozenset({bool, int, float})
_INT_LIMIT: Final = 2**1024 - 2**970
"""The smallest integer a double cannot hold: it and every larger one round to infinity."""

_PLAIN_OBJECTS: Final[frozenset[type]] = frozenset((dict, FrozenDict))
_PLAIN_ARRAYS: Final[frozenset[type]] = frozenset((list, FrozenList))
_PLAIN: Final = _PLAIN_OBJECTS | _PLAIN_ARRAYS
_STRING_KEYS: Final[frozenset[type]] = frozenset({str})
_OMITTED: Final = object()
_CONTAINER: Final = object()
_FRAME_COST: Final = 4
"""Operations charged to open a container holding other containers or foreign values..."""
_ENTRY_COST: Final = 6
"""...and per entry of it. A container of JSON scalars costs :data:`_FLAT_COST` and a
quarter per entry (checked in C, see :func:`_flat`)."""
_FLAT_COST: Final = 8
"""Operations charged per container of JSON scalars checked: about a microsecond and a half
of calls, whatever its size (most are small: the objects of an array, say)."""


def json_number(number: float) -> float | None:
    """``number`` as ``JSON.stringify`` writes it: ``None`` (``null``) for NaN, the
    infinities and an integer too large for a double; itself otherwise."""
    if type(number) is float:
        return number if number - number == 0.0 else None  # false for NaN and infinities
    return number if -_INT_LIMIT < number < _INT_LIMIT else None


def _scalar(value: Any) -> Any:
    """``value`` as a JSON scalar, :data:`_OMITTED`, or :data:`_CONTAINER` to walk."""
    cls = type(value)
    if cls in JSON_LEAVES:
        return value
    if cls is int or cls is float:
        return json_number(value)
    found = kind(value)
    if found is STRING:
        return base_string(value)
    if found is NUMBER:
        return json_number(base_number(value))
    if found is ARRAY or found is OBJECT:
        return _CONTAINER
    return _OMITTED  # undefined, and every opaque object


def _flat(container: Any, meter: Meter) -> Any:
    """A plain list or dict holding only exact JSON scalars under string keys (the leaves of
    JSON data) as a JSON value: the container itself when its numbers are all ones JSON can
    hold, else a copy with ``None`` for the others; ``None`` when it holds anything else
    (the caller walks it).

    Checked with C loops, for a quarter operation per entry, another quarter when it holds
    numbers (see :func:`_finite_sum`), and one per entry when their sum is not finite (each
    number is then converted, and the copy kept only if one changed).
    """
    count = len(container)
    meter.spend((count >> 2) + _FLAT_COST)
    is_list = type(container) in _PLAIN_ARRAYS
    if count <= _SMALL:
        found = _small_flat(container, is_list)
        if found is not _FIX:
            return found
        values = container if is_list else dict.values(container)
    else:
        if is_list:
            values = container
        elif _STRING_KEYS.issuperset(map(type, container)):
            values = dict.values(container)
        else:
            return None
        types = set(map(type, values))
        if not JSON_SCALARS.issuperset(types):
            return None
        if int not in types and float not in types:
            return container
        meter.spend(count >> 2)
        if _finite_sum(values):
            return container
    meter.spend(count)
    converted = list(map(_leaf, values))
    if all(map(is_, converted, values)):
        return container  # finite numbers whose sum overflows
    meter.build(count)
    return converted if is_list else dict(zip(container, converted, strict=True))


_SMALL: Final = 8
"""Containers up to this size are checked by a loop: cheaper than starting C loops."""
_FIX: Final = object()


def _small_flat(container: Any, is_list: bool) -> Any:
    """:func:`_flat`'s check of a small container: the container itself when it is fine,
    ``None`` when it holds anything but JSON scalars under string keys, :data:`_FIX` when a
    number needs converting."""
    if not is_list:
        for key in container:
            if type(key) is not str:
                return None
        container_values = dict.values(container)
    else:
        container_values = container
    fix = False
    for value in container_values:
        cls = type(value)
        if cls is str or cls is bool or value is None:
            continue
        if cls is int:
            fix = fix or not -_INT_LIMIT < value < _INT_LIMIT
        elif cls is float:
            fix = fix or value - value != 0.0
        else:
            return None
    return _FIX if fix else container


def _finite_sum(values: Any) -> bool:
    """Whether the numbers among ``values`` (exact JSON scalars) have a finite sum, in one
    C pass: then JSON can hold each of them. NaN and the infinities make the sum NaN or
    infinite, and an integer too large for a double makes it raise; a sum that is not
    finite proves nothing, though (finite numbers can add up past the largest double)."""
    numbers = compress(values, map(_NUMBERS.__contains__, map(type, values)))
    try:
        return math.isfinite(sum(numbers, 0.0))
    except OverflowError:
        return False


def _leaf(value: Any) -> Any:
    """Exact JSON scalar ``value`` as JSON holds it (see :func:`json_number`)."""
    cls = type(value)
    return json_number(value) if cls is float or cls is int else value


class _Frame:
    """One container being converted: its entries, and the converted ones so far."""

    __slots__ = ("changed", "entries", "index", "is_object", "key", "keys", "original", "values")

    def __init__(self, original: Any, meter: Meter) -> None:
        self.original = original
        source = original
        if type(source) is NodeView or type(source) is NodesView:
            source = source.to_dict()
        self.is_object = kind(source) is OBJECT
        self.changed = type(source) not in (_PLAIN_OBJECTS if self.is_object else _PLAIN_ARRAYS)
        self.entries = _entries(source, self.is_object)
        meter.spend(_FRAME_COST + _ENTRY_COST * len(self.entries))
        self.index = 0
        self.keys: list[Any] = []
        self.values: list[Any] = []
        self.key: Any = None  # the key of the child container being converted

    def add(self, key: Any, value: Any, original: Any) -> None:
        """Record one converted entry (``original`` is what the source held)."""
        if value is _OMITTED:
            self.changed = True
            if self.is_object:
                return
            value = None
        elif value is not original:
            self.changed = True
        if self.is_object:
            self.keys.append(key)
        self.values.append(value)

    def advance(self, done: dict[int, Any], meter: Meter) -> Any:
        """Convert entries up to the next container that needs a frame of its own, and
        return that container (its key in :attr:`key`); ``None`` when all are converted."""
        entries, keys, values, is_object = self.entries, self.keys, self.values, self.is_object
        index = self.index
        key = None
        while index < len(entries):
            if is_object:
                key, item = entries[index]
                index += 1
                if type(key) is not str:
                    self.changed = True
                    if kind(key) is not STRING:
                        continue  # invisible to expressions: left out
                    key = base_string(key)
            else:
                item = entries[index]
                index += 1
            cls = type(item)
            if cls in JSON_LEAVES:
                converted = item
            elif cls is int or cls is float:
                converted = json_number(item)
            elif id(item) in done:
                converted = done[id(item)]
            elif cls in _PLAIN and (flat := _flat(item, meter)) is not None:
                converted = done[id(item)] = flat  # `item` alive: this frame's entries hold it
            else:
                converted = _scalar(item)
                if converted is _CONTAINER:
                    self.index, self.key = index, key
                    return item
            if converted is not item:
                self.changed = True
                if converted is _OMITTED:
                    if is_object:
                        continue
                    converted = None
            if is_object:
                keys.append(key)
            values.append(converted)
        self.index = index
        return None

    def result(self, meter: Meter) -> Any:
        """The converted container: the original itself when nothing had to change (a view
        always becomes a new dict), else a copy charged as values built."""
        view = type(self.original) is NodeView or type(self.original) is NodesView
        if not self.changed and not view:
            return self.original
        if self.changed:
            meter.build(len(self.values))
        if self.is_object:
            return dict(zip(self.keys, self.values, strict=True))
        return self.values

    def step(self) -> str:
        """How this container's child being converted is reached, for error messages."""
        return f"[{self.key!r}]" if self.is_object else f"[{self.index - 1}]"


def _entries(source: Any, is_object: bool) -> list[Any]:
    """The entries of ``source`` (``(key, value)`` pairs for objects), read through the
    base classes so that no override runs."""
    if is_object:
        return list(dict.items(source))  # a lazy view is a dict already (to_dict)
    if isinstance(source, list):
        return list.copy(source)
    return list(tuple.__iter__(source))


class _Outcome(threading.local):
    """Whether the last whole result :func:`to_json` converted was ``undefined`` (or an
    object JSON cannot hold), for each thread: it returned ``None`` for it, which a caller
    must tell from a ``null`` result to leave the value out as ``JSON.stringify`` does."""

    undefined = False


OUTCOME: Final = _Outcome()
"""Set by :func:`to_json` when a whole result reads as ``undefined``; a caller that needs
to know clears it before an evaluation and reads it after one that gave ``None``
(``null`` results are returned without calling :func:`to_json`)."""


def to_json(value: Any, meter: Meter) -> Any:
    """``value`` as a JSON value, by the rules of this module's documentation. ``undefined``
    (or a value JSON cannot hold) becomes ``None``, and sets ``OUTCOME.undefined``."""
    converted = _scalar(value)
    if converted is _OMITTED:
        OUTCOME.undefined = True
        return None
    if converted is not _CONTAINER:
        return converted
    if type(value) in _PLAIN:
        flat = _flat(value, meter)
        if flat is not None:
            return flat
    done: dict[int, Any] = {}  # id of a container converted -> its conversion
    active = {id(value)}  # containers being converted: meeting one again is a cycle
    frames = [_Frame(value, meter)]
    alive = frames.copy()  # frames hold what `done` names alive: no id is reused meanwhile
    while True:
        frame = frames[-1]
        child = frame.advance(done, meter)
        if child is not None:
            if id(child) in active:
                path = "".join(open_frame.step() for open_frame in frames)
                raise Failure(f"the result is not JSON: it contains itself at result{path}")
            active.add(id(child))
            frames.append(_Frame(child, meter))
            alive.append(frames[-1])
            continue
        frames.pop()
        active.discard(id(frame.original))
        result = frame.result(meter)
        done[id(frame.original)] = result
        if not frames:
            return result
        parent = frames[-1]
        parent.add(parent.key, result, frame.original)
