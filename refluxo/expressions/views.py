"""The lazy ``nodes`` view an expression reads the run's history through.

Refluxo's TypeScript engine flattens the whole context into ``nodes`` before every step, so
a step costs O(history) and a long run is quadratic. These views compute a node's entry only
when an expression reads it (and its ``all`` list only when that is read), so a step costs
what its expressions actually touch. Node ids without results are absent, as in Refluxo.
``all`` (a record per result: as long as the node's history) is built once per view, and
so once per scope, charged to its meter (see :mod:`~refluxo.expressions.budget`): a filter
reading it for each of its items does not rebuild it each time. It is shared between
reads, so it is immutable: a tuple of read-only records
(:class:`~refluxo.frozen.FrozenDict`), which a registered transform cannot change under
another's feet; a result holding it gets it as a new list.

``nodes.<id>`` has Refluxo's shape::

    {"output": <last output>,
     "last": {"data": <last output>, "timestamp": ..., "error": ...},
     "all": [{"data": ..., "timestamp": ..., "error": ...}, ...]}

A result without output (its executor returned no data) reads ``output`` and ``data`` as
``undefined``, and one without an error reads ``error`` as ``undefined``, as in Refluxo
(``'x' + nodes.c.output`` is ``"xundefined"``, ``nodes.c.output + 1`` is NaN); those keys
are left out of the views' dicts, as ``JSON.stringify`` leaves them out
(``{{ nodes.c.last }}`` is ``{"timestamp": 5}``). An output of ``null`` stays ``null``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from refluxo.expressions.budget import meter
from refluxo.expressions.jsvalues import UNDEFINED, lazy_object
from refluxo.frozen import FrozenDict
from refluxo.model import NodeResult

_NODE_KEYS: Final = ("output", "last", "all")
_RECORD_SIZE: Final = 4
"""Values built per record of ``all``: its place in the list and its three entries."""
_RECORD_COST: Final = 8
"""Operations charged per record of ``all`` built."""


def _output(result: Any) -> Any:
    """A stored result's output: a :class:`~refluxo.model.NodeResult` or its wire dict;
    :data:`UNDEFINED` when the result has none (the executor returned no data), as
    ``lastResult.output`` reads in Refluxo, while an output of ``null`` stays ``None``.

    These are the engine's own records, read by fixed field names; expressions never choose
    which attribute is read.
    """
    if type(result) is NodeResult:
        return result.__dict__.get("output", UNDEFINED)
    return result.get("output", UNDEFINED) if isinstance(result, Mapping) else UNDEFINED


def _entry(result: Any) -> dict[str, Any]:
    """Refluxo's ``{"data", "timestamp", "error"}`` record of one result, without the keys
    that would be ``undefined`` there (a missing output, no error), as ``JSON.stringify``
    leaves them out: reading them gives ``undefined`` all the same."""
    if type(result) is NodeResult:
        fields = result.__dict__
        if "output" in fields:
            record = {"data": fields["output"], "timestamp": fields["timestamp"]}
        else:
            record = {"timestamp": fields["timestamp"]}
        error = fields.get("error")
        if error is not None:
            record["error"] = error
        return record
    record = {}
    if isinstance(result, Mapping):
        for name, key in _WIRE_ENTRY:
            value = result.get(name, UNDEFINED)
            if value is not UNDEFINED:
                record[key] = value
    return record


_WIRE_ENTRY: Final = (("output", "data"), ("timestamp", "timestamp"), ("error", "error"))
"""A wire-form result's fields and the keys of its record, in Refluxo's order."""


def _frozen(record: dict[str, Any]) -> FrozenDict:
    frozen = FrozenDict()
    dict.update(frozen, record)
    return frozen


@lazy_object
class NodeView(Mapping[str, Any]):
    """One node's results as ``{"output", "last", "all"}``, each computed when read."""

    __slots__ = ("_all", "_results")

    def __init__(self, results: Sequence[Any]) -> None:
        self._results = results
        self._all: tuple[FrozenDict, ...] | None = None

    def lookup(self, key: str) -> Any:
        """The value at ``key``, or :data:`UNDEFINED`; what member access calls."""
        if key == "output":
            return _output(self._results[-1])
        if key == "last":
            return _entry(self._results[-1])
        if key == "all":
            if self._all is None:
                self._all = self._records()
            return self._all
        return UNDEFINED

    def _records(self) -> tuple[FrozenDict, ...]:
        current = meter()
        current.spend(_RECORD_COST * len(self._results))
        current.build(_RECORD_SIZE * len(self._results))
        return tuple(_frozen(_entry(result)) for result in self._results)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of its entries (what ``{{ nodes.<id> }}`` returns): all three, or
        ``last`` and ``all`` when the last result has no output."""
        meter().build(len(_NODE_KEYS))
        return {key: self.lookup(key) for key in self}

    def __getitem__(self, key: str) -> Any:
        value = self.lookup(key)
        if value is UNDEFINED:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        if _output(self._results[-1]) is UNDEFINED:
            return iter(_NODE_KEYS[1:])
        return iter(_NODE_KEYS)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"NodeView({len(self._results)} results)"


@lazy_object
class NodesView(Mapping[str, Any]):
    """Every node with at least one result, by id, over a context mapping.

    Reads exactly one context entry per distinct node id an evaluation touches (each
    :class:`NodeView` is kept for the rest of the step).
    """

    __slots__ = ("_context", "_seen")

    def __init__(self, context: Mapping[str, Sequence[Any]]) -> None:
        self._context = context
        self._seen: dict[str, NodeView] = {}

    def lookup(self, node_id: str) -> Any:
        """The node's :class:`NodeView`, or :data:`UNDEFINED` when it has no results."""
        view = self._seen.get(node_id)
        if view is None:
            results = self._context.get(node_id)
            if not results:
                return UNDEFINED
            view = self._seen[node_id] = NodeView(results)
        return view

    def to_dict(self) -> dict[str, Any]:
        """Every node's entry as plain dicts (what ``{{ nodes }}`` returns; O(history))."""
        return {node_id: self.lookup(node_id).to_dict() for node_id in self}

    def __getitem__(self, node_id: str) -> Any:
        view = self.lookup(node_id)
        if view is UNDEFINED:
            raise KeyError(node_id)
        return view

    def __iter__(self) -> Iterator[str]:
        return (node_id for node_id, results in self._context.items() if results)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and self.lookup(node_id) is not UNDEFINED

    def __repr__(self) -> str:
        return f"NodesView({len(self._context)} node ids)"
