"""HistoryContext: what it reads from the store's history, and what it knows already."""

from __future__ import annotations

from refluxo.model import NodeResult
from refluxo.runtime.history import HistoryContext


class CountingReader:
    """A run whose node ``a`` has two committed results; every call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.results = {"a": [NodeResult(output=0, timestamp=1), NodeResult(output=1, timestamp=2)]}

    def count(self, node_id: str) -> int:
        self.calls.append(("count", node_id))
        return len(self.results.get(node_id, []))

    def get(self, node_id: str, index: int) -> NodeResult:
        self.calls.append(("get", node_id, str(index)))
        return self.results[node_id][index]

    def all(self, node_id: str) -> list[NodeResult]:
        self.calls.append(("all", node_id))
        return list(self.results.get(node_id, []))

    def node_ids(self) -> list[str]:
        self.calls.append(("node_ids",))
        return list(self.results)


def result(output: object) -> NodeResult:
    return NodeResult(output=output, timestamp=9)


def test_without_counts_the_reader_is_asked_once_per_node() -> None:
    reader = CountingReader()
    context = HistoryContext(reader, 2)

    context = context.appended("b", result("first b"))
    context = context.appended("a", result(2))
    context = context.appended("b", result("second b"))

    assert [(e.node_id, e.node_index) for e in context.pending] == [("b", 0), ("a", 2), ("b", 1)]
    assert reader.calls == [("count", "b"), ("count", "a")]  # memoised afterwards
    assert list(context) == ["a", "b"]
    assert reader.calls[-1] == ("node_ids",)


def test_nodes_looked_up_but_absent_are_not_listed() -> None:
    reader = CountingReader()
    context = HistoryContext(reader, 2)
    assert "ghost" not in context
    assert context.get("ghost") is None
    assert list(context) == ["a"]
    assert reader.calls.count(("count", "ghost")) == 1  # memoised
