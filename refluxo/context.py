"""The execution context: every node's results, keyed by node id.

A snapshot's context is the run's whole history, and it only ever grows by one result per
step. Copying it at every step (as the TypeScript engine does with object spreads) makes a
step cost O(history) and a run quadratic. Here the context is persistent: a new snapshot
shares all of its predecessor's history and adds one entry in effectively constant time
(a hash array mapped trie for the keys, a persistent vector per node). Old snapshots stay
valid and unchanged, which is what lets :meth:`WorkflowEngine.execute_step` promise that it
never mutates its argument.

Keys iterate in JavaScript's order for the same history (:func:`js_key_order`): the
TypeScript engine's context is a plain object, and ``Object.keys`` (so ``{{ nodes }}``, an
executor looping over the context, and ``JSON.stringify``) lists integer-like keys first,
ascending, then the other keys in the order they were first added. A hash order would
change between processes and differ from the other engine's.

:class:`Context` is the abstract read interface plus one write, :meth:`Context.appended`.
Durable runtimes provide their own implementation that loads results on demand instead of
holding the whole history in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import immutables
from pyrsistent import pvector

if TYPE_CHECKING:
    from refluxo.model import NodeResult


MAX_ARRAY_INDEX = 2**32 - 2
"""The largest canonical array index of JavaScript: keys up to it are listed first."""


def is_array_index(key: str) -> bool:
    """Whether JavaScript lists ``key`` among an object's integer keys (``"0"``, ``"10"``;
    not ``"01"``, ``"-1"`` or ``"4294967295"``)."""
    return (
        0 < len(key) <= 10
        and key.isascii()
        and key.isdigit()
        and (key[0] != "0" or key == "0")
        and int(key) <= MAX_ARRAY_INDEX
    )


def js_key_order(keys: Iterable[str]) -> list[str]:
    """``keys`` (in the order they were first added) as JavaScript's ``Object.keys`` lists
    them: integer-like keys ascending, then the others in their order."""
    indices: list[str] = []
    names: list[str] = []
    for key in keys:
        (indices if is_array_index(key) else names).append(key)
    if not indices:
        return names
    indices.sort(key=int)
    return indices + names


def in_added_order(added: Mapping[str, int]) -> list[str]:
    """The keys of ``added`` (key -> when it was first added) in the order they were added."""
    return [key for key, _ in sorted(added.items(), key=itemgetter(1))]


class Context(Mapping[str, Sequence["NodeResult"]], abc.ABC):
    """Read-only mapping of node id to the node's results, oldest first.

    Iterates in JavaScript's key order (:func:`js_key_order`); implementations keep the
    order in which nodes first got a result and list it through :func:`js_key_order`.
    Compares equal to a plain ``dict`` of lists with the same content, so
    ``snapshot.context == {"a": [result]}`` works as users expect.
    """

    __slots__ = ()

    @abc.abstractmethod
    def appended(self, node_id: str, result: NodeResult) -> Context:
        """Return a new context with ``result`` added to ``node_id``'s results.

        Never modifies ``self``.
        """

    def to_dict(self) -> dict[str, list[NodeResult]]:
        """A plain, mutable copy: ``{node_id: [NodeResult, ...]}``."""
        return {node_id: list(results) for node_id, results in self.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        if len(self) != len(other):
            return False
        for key, results in self.items():
            if key not in other:
                return False
            theirs = other[key]
            if len(results) != len(theirs) or list(results) != list(theirs):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Bounded: a run's history can hold thousands of results.
        shown = ", ".join(f"{key!r}: <{len(self[key])} results>" for key in list(self)[:5])
        more = f", ... {len(self) - 5} more" if len(self) > 5 else ""
        return f"{type(self).__name__}({{{shown}{more}}})"


class MemoryContext(Context):
    """The in-memory persistent context; the default for every snapshot."""

    __slots__ = ("_results",)

    def __init__(self, results: immutables.Map[str, tuple[int, Any]] | None = None) -> None:
        # node id -> (when it was first added: 0, 1, ..., its results). The position is
        # what JavaScript's iteration order needs; keeping it beside the results costs a
        # step nothing more than the map update it makes anyway.
        self._results: immutables.Map[str, tuple[int, Any]] = (
            results if results is not None else immutables.Map()
        )

    @classmethod
    def from_mapping(cls, results: Mapping[str, Iterable[NodeResult]]) -> MemoryContext:
        """Build a context from any mapping of node id to results (a decoded snapshot).

        The mapping's own order is the order the keys were added (a decoded JSON object's
        order, as ``JSON.parse`` reads it).
        """
        if isinstance(results, MemoryContext):
            return results
        return cls(
            immutables.Map(
                {key: (index, pvector(value)) for index, (key, value) in enumerate(results.items())}
            )
        )

    def appended(self, node_id: str, result: NodeResult) -> MemoryContext:
        existing = self._results.get(node_id)
        if existing is None:
            entry = (len(self._results), pvector([result]))
        else:
            entry = (existing[0], existing[1].append(result))
        return MemoryContext(self._results.set(node_id, entry))

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        results: Sequence[NodeResult] = self._results[node_id][1]
        return results

    def __iter__(self) -> Iterator[str]:
        added = sorted(self._results.items(), key=_position)
        return iter(js_key_order(key for key, _ in added))

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._results

    def __copy__(self) -> MemoryContext:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> MemoryContext:
        return self


def _position(item: tuple[str, tuple[int, Any]]) -> int:
    return item[1][0]


EMPTY_CONTEXT = MemoryContext()
