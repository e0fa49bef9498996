"""Read-only views of node data and of recorded outputs.

An executor receives its node's static ``data``. The TypeScript engine deep-copies it at
every step so that an executor cannot corrupt the workflow; that copy costs O(size of the
data) per step, and a loop over a 20,000-item list becomes quadratic. Instead, the engine
deep-freezes each node's data once, when it is constructed: the executor gets real ``dict``
and ``list`` instances (so ``isinstance``, JSON encoding and equality work) that raise
``TypeError`` on any mutation. An executor that needs a mutable copy calls :func:`thaw`.
When transform engines are configured they run on a fresh mutable deep copy, as in Refluxo.
"""

from __future__ import annotations

from typing import Any, NoReturn

from refluxo.errors import LimitExceededError

_READ_ONLY = (
    "node data and recorded outputs are read-only (they belong to the workflow and to "
    "the run's history); use refluxo.thaw(value) for a mutable copy"
)


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise TypeError(_READ_ONLY)


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose mutating methods raise ``TypeError``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = update = _refuse

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` when it is there (a read, as for a ``dict``); else refused."""
        if key in self:
            return self[key]
        _refuse()

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (dict, (dict(self),))


class FrozenList(list[Any]):
    """A ``list`` whose mutating methods raise ``TypeError``."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return thaw(self)

    def __reduce__(self) -> Any:
        return (list, (list(self),))


def freeze(value: Any) -> Any:
    """Return a deeply read-only version of JSON-like ``value`` (dicts and lists frozen)."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, dict):
        frozen = FrozenDict()
        dict.update(frozen, {key: freeze(item) for key, item in value.items()})
        return frozen
    if isinstance(value, list | tuple):
        frozen_list = FrozenList()
        list.extend(frozen_list, [freeze(item) for item in value])
        return frozen_list
    return value


def thaw(value: Any) -> Any:
    """Return a mutable deep copy of JSON-like ``value`` (dicts, lists and tuples copied)."""
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(item) for item in value]
    return value


def thaw_within(value: Any, limit: int, what: str) -> Any:
    """:func:`thaw`, refusing a copy of more than ``limit`` units (a character of a string
    or of a dict's key, an element of a list or dict) with
    :class:`~refluxo.errors.LimitExceededError`.

    The copy counts what it writes, so a value held N times in ``value`` counts N times:
    a few bytes of ``[x, x, x, ...]`` sharing one large ``x`` expand to N copies of it
    (and to N times its JSON), which only such a count bounds. It stops at the limit, so
    refusing costs no more than copying ``limit`` units.
    """
    budget = [limit]

    def copy(item: Any) -> Any:
        if isinstance(item, str):
            budget[0] -= len(item)
        elif isinstance(item, dict):
            budget[0] -= len(item) + sum(len(key) for key in item if isinstance(key, str))
            if budget[0] < 0:
                raise _over(limit, what)
            return {key: copy(inner) for key, inner in item.items()}
        elif isinstance(item, list | tuple):
            budget[0] -= len(item)
            if budget[0] < 0:
                raise _over(limit, what)
            return [copy(inner) for inner in item]
        if budget[0] < 0:
            raise _over(limit, what)
        return item

    return copy(value)


def _over(limit: int, what: str) -> LimitExceededError:
    return LimitExceededError(
        f"{what} holds more than {limit:,} characters and elements (a value it refers to "
        "several times counts each time)"
    )
