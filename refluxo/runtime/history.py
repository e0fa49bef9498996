"""A context backed by a store's history, read on demand.

Loading a run's whole history to execute one step would make every step O(history). This
context reads only what the step touches: ``len(context["it"])`` is one count, and
``nodes.n1.last`` in an expression one indexed read. Results appended during the delivery
stay in memory (``pending``) until the dispatcher commits them.

Every read goes through the store's :class:`~refluxo.runtime.ports.HistoryReader` and is
memoised for the delivery. A reader may raise :class:`~refluxo.errors.TransientError`; it
passes through the engine untouched, so the delivery is retried rather than the node failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from refluxo.context import Context, js_key_order
from refluxo.model import NodeResult
from refluxo.runtime.ports import AppendedResult, HistoryReader


class _Cache:
    """Committed history does not change during a delivery: memoise what was read."""

    __slots__ = ("counts", "reader", "results")

    def __init__(self, reader: HistoryReader) -> None:
        self.reader = reader
        self.counts: dict[str, int] = {}
        self.results: dict[tuple[str, int], NodeResult] = {}

    def count(self, node_id: str) -> int:
        known = self.counts.get(node_id)
        if known is None:
            known = self.counts[node_id] = self.reader.count(node_id)
        return known

    def node_ids(self) -> list[str]:
        """Nodes with committed results, in first-result order."""
        return list(self.reader.node_ids())

    def get(self, node_id: str, index: int) -> NodeResult:
        key = (node_id, index)
        found = self.results.get(key)
        if found is None:
            found = self.results[key] = self.reader.get(node_id, index)
        return found


class HistoryContext(Context):
    """The context of a stored run: committed results from the store, plus ``pending``."""

    __slots__ = ("_cache", "_next_seq", "pending")

    def __init__(
        self,
        reader: HistoryReader,
        next_seq: int,
        pending: tuple[AppendedResult, ...] = (),
        *,
        _cache: _Cache | None = None,
    ) -> None:
        self._cache = _cache or _Cache(reader)
        self._next_seq = next_seq
        self.pending = pending

    def appended(self, node_id: str, result: NodeResult) -> HistoryContext:
        entry = AppendedResult(self._next_seq, node_id, self._count(node_id), result)
        return HistoryContext(
            self._cache.reader, self._next_seq + 1, (*self.pending, entry), _cache=self._cache
        )

    def _pending_for(self, node_id: str) -> list[NodeResult]:
        return [entry.result for entry in self.pending if entry.node_id == node_id]

    def _count(self, node_id: str) -> int:
        return self._cache.count(node_id) + sum(1 for e in self.pending if e.node_id == node_id)

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        if not isinstance(node_id, str):
            raise KeyError(node_id)
        committed = self._cache.count(node_id)
        pending = self._pending_for(node_id)
        if committed == 0 and not pending:
            raise KeyError(node_id)
        return StoredResults(self._cache, node_id, committed, tuple(pending))

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and self._count(node_id) > 0

    def __iter__(self) -> Iterator[str]:
        seen = self._cache.node_ids()
        known = set(seen)
        for entry in self.pending:
            if entry.node_id not in known:
                known.add(entry.node_id)
                seen.append(entry.node_id)
        return iter(js_key_order(seen))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class StoredResults(Sequence[NodeResult]):
    """One node's results: committed ones read on demand, then this delivery's pending ones."""

    __slots__ = ("_cache", "_committed", "_node_id", "_pending")

    def __init__(
        self, cache: _Cache, node_id: str, committed: int, pending: tuple[NodeResult, ...]
    ) -> None:
        self._cache = cache
        self._node_id = node_id
        self._committed = committed
        self._pending = pending

    def __len__(self) -> int:
        return self._committed + len(self._pending)

    @overload
    def __getitem__(self, index: int) -> NodeResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NodeResult]: ...

    def __getitem__(self, index: int | slice) -> NodeResult | Sequence[NodeResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        size = len(self)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError("result index out of range")
        if position >= self._committed:
            return self._pending[position - self._committed]
        return self._cache.get(self._node_id, position)

    def __iter__(self) -> Iterator[NodeResult]:
        if self._committed:
            yield from self._cache.reader.all(self._node_id)[: self._committed]
        yield from self._pending

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StoredResults({self._node_id!r}, {len(self)} results)"
