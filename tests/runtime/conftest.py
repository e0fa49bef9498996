"""Fixtures for runtime tests: a test app, a fake clock, the embedded runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo import StepResult
from refluxo.backends.embedded import EmbeddedRuntime
from refluxo.runtime import App, current_step
from refluxo.runtime.protocols import SnapshotStore
from tests.conftest import FakeClock


def build_app(clock: FakeClock) -> App:
    """Node types used across runtime tests, and a few workflows."""
    app = App(clock=clock)

    @app.node()
    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    @app.node()
    def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult(payload, next_handle="yes" if payload.get("ok") else "no")

    @app.node(retry_policy={"maxAttempts": 3, "interval": 5000, "backoff": "fixed"})
    def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if current_step().attempt <= data.get("fail", 0):
            raise ConnectionError(f"attempt {current_step().attempt} failed")
        return StepResult({"attempt": current_step().attempt})

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        if index < data["count"]:
            return StepResult(
                {"index": index, "blob": "x" * data.get("size", 0)}, next_handle="loop"
            )
        return StepResult({"done": index}, next_handle="done")

    app.workflow(
        "chain",
        {
            "nodes": [{"id": f"n{i}", "type": "echo", "data": {"i": i}} for i in range(5)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(4)],
        },
    )
    app.workflow(
        "approval",
        {
            "start": "ask",
            "nodes": [
                {"id": "ask", "type": "approval"},
                {"id": "yes", "type": "echo", "data": {"answer": "yes"}},
                {"id": "no", "type": "echo", "data": {"answer": "no"}},
            ],
            "edges": [
                {"source": "ask", "target": "yes", "sourceHandle": "yes"},
                {"source": "ask", "target": "no", "sourceHandle": "no"},
            ],
        },
    )
    app.workflow(
        "flaky",
        {
            "nodes": [
                {"id": "f", "type": "flaky", "data": {"fail": 2}},
                {"id": "after", "type": "echo"},
            ],
            "edges": [{"source": "f", "target": "after"}],
        },
    )
    app.workflow(
        "loop",
        {
            "start": "it",
            "nodes": [
                {"id": "it", "type": "iterate", "data": {"count": 20}},
                {"id": "body", "type": "echo", "data": {"tag": "body"}},
                {"id": "end", "type": "echo", "data": {"tag": "end"}},
            ],
            "edges": [
                {"source": "it", "target": "body", "sourceHandle": "loop"},
                {"source": "body", "target": "it"},
                {"source": "it", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    return app


@pytest.fixture
def app(clock: FakeClock) -> App:
    return build_app(clock)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def runtime(app: App, db_path: Path) -> Iterator[EmbeddedRuntime]:
    """The embedded runtime with no background workers: tests deliver with drain()."""
    runtime = EmbeddedRuntime(app, db_path, workers=0, synchronous="NORMAL")
    yield runtime
    runtime.stop()


def assert_history_consistent(store: SnapshotStore, run_id: str) -> list[str]:
    """No step committed twice or lost: seqs 0..n-1, per-node indexes 0..k-1.

    Returns the node ids in commit order.
    """
    record = store.load_run(run_id)
    assert record is not None, f"run {run_id} was lost"
    timeline = store.timeline(run_id, limit=1_000_000)
    assert [entry.seq for entry in timeline] == list(range(record.result_count))
    per_node: dict[str, int] = {}
    history = store.history(run_id)
    for entry in timeline:
        index = per_node.get(entry.node_id, 0)
        assert history.get(entry.node_id, index) == entry.result
        per_node[entry.node_id] = index + 1
    for node_id, count in per_node.items():
        assert history.count(node_id) == count
    return [entry.node_id for entry in timeline]
