"""Reading a stored run the way the dispatcher does, for assertions."""

from __future__ import annotations

from typing import Any

from refluxo.model import NodeResult, Snapshot
from refluxo.runtime.ports import (
    AppendedResult,
    HistoryReader,
    Payload,
    RunRecord,
    RunStore,
    StepCommit,
)


def history_of(store: RunStore, run_id: str) -> HistoryReader:
    """The committed history of ``run_id``, read through a freshly loaded record."""
    record = store.load_run(run_id)
    assert record is not None, f"no run {run_id!r}"
    return store.history(record)


def assert_history_consistent(store: RunStore, run_id: str) -> list[str]:
    """No step committed twice or lost: seqs 0..n-1, per-node indexes 0..k-1.

    Returns the node ids in commit order.
    """
    record = store.load_run(run_id)
    assert record is not None, f"run {run_id} was lost"
    timeline = store.timeline(run_id, limit=1_000_000)
    assert [entry.seq for entry in timeline] == list(range(record.result_count))
    per_node: dict[str, int] = {}
    history = history_of(store, run_id)
    for entry in timeline:
        index = per_node.get(entry.node_id, 0)
        assert history.get(entry.node_id, index) == entry.result
        per_node[entry.node_id] = index + 1
    for node_id, count in per_node.items():
        assert history.count(node_id) == count
    return [entry.node_id for entry in timeline]


def new_record(run_id: str, *, created_at: int = 1000, status: str = "active") -> RunRecord:
    """A run at version 0 on node ``a``, as the service creates one."""
    snapshot = Snapshot(workflow_id=run_id, status=status, current_node_id="a", version=0)
    return RunRecord(
        run_id=run_id,
        workflow="wf",
        definition_version="v1",
        snapshot=snapshot,
        created_at=created_at,
        updated_at=created_at,
        input={"in": 1},
        pending=Payload({"in": 1}),
    )


def step(
    store: RunStore, record: RunRecord, results: list[tuple[str, Any]], **changes: Any
) -> StepCommit:
    """A commit appending ``results`` (node id, output) after ``record``'s history."""
    history = store.history(record)
    counts: dict[str, int] = {}
    appended = []
    for offset, (node_id, output) in enumerate(results):
        if node_id not in counts:
            counts[node_id] = history.count(node_id)
        appended.append(
            AppendedResult(
                seq=record.result_count + offset,
                node_id=node_id,
                node_index=counts[node_id],
                result=NodeResult(output=output, timestamp=5, attempt=1),
            )
        )
        counts[node_id] += 1
    snapshot = record.snapshot.model_copy(update={"version": record.version + 1, **changes})
    return StepCommit(
        run_id=record.run_id, expected_version=record.version, snapshot=snapshot, results=appended
    )
