"""The execution context: every node's results, keyed by node id.

A snapshot's context is the run's whole history, and it only ever grows by one result per
step. Copying it at every step (as the TypeScript engine does with object spreads) makes a
step cost O(history) and a run quadratic. Here the context is persistent: a new snapshot
shares all of its predecessor's history and adds one entry in effectively constant time
(a hash array mapped trie for the keys, a persistent vector per node). Old snapshots stay
valid and unchanged, which is what lets :meth:`WorkflowEngine.execute_step` promise that it
never mutates its argument.

:class:`Context` is the abstract read interface plus one write, :meth:`Context.appended`.
Durable runtimes provide their own implementation that loads results on demand instead of
holding the whole history in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import immutables
from pyrsistent import pvector

if TYPE_CHECKING:
    from refluxo.model import NodeResult


class Context(Mapping[str, Sequence["NodeResult"]], abc.ABC):
    """Read-only mapping of node id to the node's results, oldest first.

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

    def __init__(self, results: immutables.Map[str, Any] | None = None) -> None:
        self._results: immutables.Map[str, Any] = (
            results if results is not None else immutables.Map()
        )

    @classmethod
    def from_mapping(cls, results: Mapping[str, Iterable[NodeResult]]) -> MemoryContext:
        """Build a context from any mapping of node id to results (a decoded snapshot)."""
        if isinstance(results, MemoryContext):
            return results
        return cls(immutables.Map({key: pvector(value) for key, value in results.items()}))

    def appended(self, node_id: str, result: NodeResult) -> MemoryContext:
        existing = self._results.get(node_id)
        history = pvector([result]) if existing is None else existing.append(result)
        return MemoryContext(self._results.set(node_id, history))

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        results: Sequence[NodeResult] = self._results[node_id]
        return results

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._results


EMPTY_CONTEXT = MemoryContext()
