"""What the SQLite store keeps in memory so that a step does less: node counts a commit
extends without copying, the run's input decoded once, definitions stored once."""

from __future__ import annotations

from pathlib import Path

from refluxo.backends.sqlite.store import NodeCounts
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.model import NodeResult
from refluxo.runtime.ports import AppendedResult, counts_after
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.sqlite_trace import trace_statements


def _appended(seq: int, node_id: str, index: int) -> AppendedResult:
    return AppendedResult(seq, node_id, index, NodeResult(output=seq, timestamp=0))


def test_node_counts_grow_like_counts_after_and_leave_the_counts_they_came_from() -> None:
    steps = [("b", 0), ("a", 0), ("b", 1), ("c", 0), ("a", 1), ("a", 2)]
    plain: dict[str, int] = {"z": 3}
    persistent = NodeCounts.of(plain)
    history: list[NodeCounts] = [persistent]
    for seq, (node_id, index) in enumerate(steps):
        appended = [_appended(seq, node_id, index)]
        after = counts_after(plain, appended)
        assert after is not None
        plain = dict(after)
        persistent = persistent.after(appended)
        history.append(persistent)
        assert dict(persistent) == plain
        assert list(persistent) == list(plain)  # first-result order
    assert list(history[0].items()) == [("z", 3)]  # untouched by what came after
    assert dict(history[2]) == {"z": 3, "b": 1, "a": 1}
    assert persistent.get("missing", 0) == 0
    assert "c" in persistent
    assert len(persistent) == 4
    assert NodeCounts.of(persistent) is persistent


def test_a_long_run_numbers_its_results_from_the_counts_its_commits_return(
    tmp_path: Path, clock: FakeClock
) -> None:
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=0)
    try:
        run_id = runtime.service.start("loop", {"count": 5, "tag": ["x"]}).record.run_id
        assert runtime.scheduler.drain() > 5
        record = runtime.store.load_run(run_id)
        assert record is not None
        assert record.status == "completed"
        assert record.input == {"count": 5, "tag": ["x"]}
        rows = (
            runtime.db.connection()
            .execute(
                "SELECT node_id, node_index FROM results WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            .fetchall()
        )
        expected: dict[str, int] = {}
        for node_id, index in rows:
            assert index == expected.get(node_id, 0)  # each node's results numbered 0, 1, ...
            expected[node_id] = index + 1
        assert len(expected) >= 2
        assert max(expected.values()) >= 5
    finally:
        runtime.stop()


def test_a_commit_returns_the_run_input_as_stored(tmp_path: Path, clock: FakeClock) -> None:
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=0)
    returned: list[object] = []
    commit = runtime.store.commit

    def kept(step: object) -> object:
        result = commit(step)  # type: ignore[arg-type]
        if result.record is not None:
            returned.append(result.record.input)
        return result

    runtime.store.commit = kept  # type: ignore[assignment,method-assign]
    try:
        first = runtime.service.start("loop", {"count": 3, "n": 1}).record.run_id
        second = runtime.service.start("loop", {"count": 3, "n": 2}).record.run_id
        runtime.scheduler.drain()
        for run_id in (first, second):
            record = runtime.store.load_run(run_id)
            assert record is not None
            assert record.status == "completed"
        assert returned
        assert {repr(value) for value in returned} == {
            repr({"count": 3, "n": 1}),
            repr({"count": 3, "n": 2}),
        }
    finally:
        runtime.stop()


def test_a_definition_is_looked_up_once_per_store(tmp_path: Path, clock: FakeClock) -> None:
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=0)
    statements: list[str] = []
    trace_statements(runtime.db, statements.append)
    try:
        runtime.service.start("chain")
        runtime.service.start("chain")
        runtime.service.start("chain")
        touching = [s for s in statements if "definitions" in s]
        assert len([s for s in touching if s.startswith("SELECT")]) == 1
        assert len([s for s in touching if s.startswith("INSERT")]) == 1
        stored = runtime.db.connection().execute("SELECT count(*) FROM definitions").fetchone()
        assert stored[0] == 1
    finally:
        runtime.stop()
