"""Child runs: ``map``, ``parallel`` and ``call`` through the durable runtime.

Each test drives runs with the memory runtime's ``drain`` (one thread, a fake clock) or the
embedded default, and checks what a user relies on: outputs in item order, failures as
documented, at most ``concurrency`` children running, each child run once, one join, and
cancel reaching every child.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest

from refluxo import SnapshotStatus, StepResult
from refluxo.backends.memory import MemoryRuntime
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.retry import DefaultErrorHandler
from refluxo.runtime import App, Delivery, RunRecord, RuntimeLimits
from refluxo.runtime.dispatcher import Dispatcher
from refluxo.runtime.errors import RunConflict
from refluxo.runtime.links import child_run_id
from refluxo.runtime.service import RunService
from tests.support.clock import FakeClock


def build_app(clock: FakeClock) -> App:
    app = App(clock=clock)

    @app.node()
    def double(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        x = context["start"][-1].output["x"]
        if x < 0:
            raise ValueError(f"negative: {x}")
        return StepResult({"y": x * 2})

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult({"question": "go?"}, pause=True)
        return StepResult(payload)

    def flow(*nodes: dict[str, Any]) -> dict[str, Any]:
        ids = ["start", *(node["id"] for node in nodes)]
        return {
            "nodes": [{"id": "start", "type": "trigger"}, *nodes],
            "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(ids)],
        }

    app.workflow("item", flow({"id": "d", "type": "double"}))
    app.workflow("waits", flow({"id": "q", "type": "ask"}))
    app.workflow("label", flow({"id": "l", "type": "trigger", "data": "labelled"}))
    # A child that calls the workflow its input names: children of one map that differ.
    app.workflow(
        "mixed",
        flow({"id": "pick", "type": "call", "data": {"workflow": "{{ nodes.start.output.wf }}"}}),
    )
    for failure in ("fail_fast", "collect"):
        app.workflow(
            f"map_{failure}",
            flow(
                {
                    "id": "m",
                    "type": "map",
                    "data": {
                        "items": "{{ nodes.start.output.items }}",
                        "workflow": "{{ nodes.start.output.workflow }}",
                        "concurrency": "{{ nodes.start.output.concurrency }}",
                        "failure": failure,
                    },
                }
            ),
        )
    app.workflow(
        "branches",
        flow(
            {
                "id": "p",
                "type": "parallel",
                "data": {
                    "branches": {"a": "item", "b": {"workflow": "item", "input": {"x": 5}}},
                    "input": {"x": 1},
                },
            }
        ),
    )
    app.workflow(
        "sub",
        flow(
            {
                "id": "c",
                "type": "call",
                "data": {"workflow": "item", "input": "{{ nodes.start.output }}"},
            }
        ),
    )
    app.workflow(
        "nested",
        flow(
            {
                "id": "outer",
                "type": "map",
                "data": {"items": [{"x": 1}, {"x": 2}], "workflow": "sub", "concurrency": 2},
            }
        ),
    )
    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory(clock: FakeClock) -> MemoryRuntime:
    return MemoryRuntime(build_app(clock))


def start_map(
    runtime: MemoryRuntime | EmbeddedRuntime,
    items: list[Any],
    *,
    failure: str = "collect",
    concurrency: Any = 3,
    workflow: str = "item",
    run_id: str = "p",
) -> None:
    runtime.service.start(
        f"map_{failure}",
        {"items": items, "workflow": workflow, "concurrency": concurrency},
        run_id=run_id,
    )


def output_of(runtime: MemoryRuntime | EmbeddedRuntime, run_id: str, node_id: str) -> Any:
    entries = [e for e in runtime.service.timeline(run_id, limit=10_000) if e.node_id == node_id]
    assert len(entries) == 1, entries
    return entries[0].result.output


def wait_version(record: RunRecord) -> int:
    return int(record.snapshot.metadata["childRuns"]["version"])


def children_of(runtime: MemoryRuntime | EmbeddedRuntime) -> list[RunRecord]:
    runs = runtime.service.list(limit=1000).runs
    return [run for run in runs if "parentRun" in run.snapshot.metadata]


def test_map_outputs_the_childrens_outputs_in_item_order(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": i} for i in range(7)], concurrency=2)
    memory.drain()
    parent = memory.service.get("p")
    assert parent.status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "m") == [{"y": 2 * i} for i in range(7)]
    summary = parent.snapshot.metadata["childRuns"]
    assert summary["count"] == 7
    assert summary["ended"] == 7
    assert summary["failed"] == 0
    assert summary["waiting"] is False
    assert "inputs" not in summary
    # Both directions: the parent names the wait; each child names its parent.
    child = memory.service.get(child_run_id("p", summary["version"], 4))
    assert child.input == {"x": 4}
    assert child.snapshot.metadata["parentRun"] == {
        "runId": "p",
        "version": summary["version"],
        "node": "m",
        "index": 4,
        "depth": 1,
        "budget": 0,  # its workflow starts no child runs: no share of the tree's budget
        "reported": True,
    }
    assert len(children_of(memory)) == 7


def test_collect_keeps_each_failed_childs_place_and_reason(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": 1}, {"x": -2}, {"x": 3}], failure="collect")
    memory.drain()
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    version = wait_version(memory.service.get("p"))
    assert output_of(memory, "p", "m") == [
        {"y": 2},
        {
            "error": "node 'd' failed after 1 attempt: ValueError: negative: -2",
            "runId": child_run_id("p", version, 1),
        },
        {"y": 6},
    ]


def test_fail_fast_fails_the_node_and_cancels_the_children_still_running(
    memory: MemoryRuntime,
) -> None:
    # Child 0 fails at once; child 1 pauses (it would wait forever); 2.. never start.
    items = [{"wf": "waits"}, {"wf": "item"}, {"wf": "waits"}, {"wf": "waits"}]
    # "item" gets no input and fails: a failing child.
    start_map(memory, items, failure="fail_fast", concurrency=2, workflow="mixed")
    memory.drain()
    parent = memory.service.get("p")
    assert parent.status == SnapshotStatus.FAILED
    reason = parent.snapshot.metadata["failedReason"]
    version = wait_version(parent)
    assert f"item 1 (run {child_run_id('p', version, 1)}) failed" in reason
    first = memory.service.get(child_run_id("p", version, 0))
    assert first.status == SnapshotStatus.FAILED
    assert first.snapshot.metadata["failedReason"].startswith("Cancelled: a sibling")
    # Its own child (a call) was cancelled with it.
    grandchild = memory.service.get(child_run_id(first.run_id, wait_version(first), 0))
    assert grandchild.status == SnapshotStatus.FAILED
    assert grandchild.snapshot.metadata["failedReason"].startswith("Cancelled: its parent")
    # Items 2 and 3 were never started: the window never moved past the failure.
    assert memory.store.load_run(child_run_id("p", version, 3)) is None


def test_at_most_concurrency_children_run_at_once(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": i} for i in range(30)], concurrency=4)
    peak = 0
    while True:
        due = memory.scheduler.due(memory.app.clock())
        if not due:
            break
        for delivery in due:
            memory.service.deliver(delivery)
            memory.scheduler.acknowledge(delivery)
            running = [c for c in children_of(memory) if not c.status.is_terminal]
            peak = max(peak, len(running))
    assert peak == 4
    assert output_of(memory, "p", "m") == [{"y": 2 * i} for i in range(30)]


def test_parallel_outputs_by_branch_name(memory: MemoryRuntime) -> None:
    memory.service.start("branches", {}, run_id="p")
    memory.drain()
    assert output_of(memory, "p", "p") == {"a": {"y": 2}, "b": {"y": 10}}


def test_call_outputs_the_childs_output_and_nests(memory: MemoryRuntime) -> None:
    memory.service.start("nested", {}, run_id="p")
    memory.drain()
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "outer") == [{"y": 2}, {"y": 4}]


def test_a_waiting_parent_cannot_be_resumed_by_a_caller(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": 1}], workflow="waits")
    memory.drain()
    parent = memory.service.get("p")
    assert parent.status == SnapshotStatus.PAUSED
    with pytest.raises(RunConflict, match="waits for its 1 child runs"):
        memory.service.resume("p", {"outputs": [1], "errors": []})


def test_cancelling_a_parent_cancels_its_children(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": 1}] * 5, workflow="waits", concurrency=5)
    memory.drain()
    assert len([c for c in children_of(memory) if c.status == SnapshotStatus.PAUSED]) == 5
    memory.service.cancel("p", "stop")
    memory.drain()
    assert memory.service.get("p").status == SnapshotStatus.FAILED
    children = children_of(memory)
    assert len(children) == 5
    assert all(c.status == SnapshotStatus.FAILED for c in children)
    assert all(
        "its parent run was cancelled" in c.snapshot.metadata["failedReason"] for c in children
    )


def test_duplicate_and_late_deliveries_join_once(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": i} for i in range(6)], concurrency=2)
    delivered: list[Delivery] = []
    while due := memory.scheduler.due(memory.app.clock()):
        for delivery in due:
            for _ in range(3):  # every delivery arrives three times
                memory.service.deliver(delivery)
            for old in delivered[-5:]:  # and five old ones again
                memory.service.deliver(old)
            delivered.append(delivery)
            memory.scheduler.acknowledge(delivery)
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "m") == [{"y": 2 * i} for i in range(6)]
    assert len(children_of(memory)) == 6
    for child in children_of(memory):
        assert [e.node_id for e in memory.service.timeline(child.run_id)] == ["start", "d"]


def test_a_report_lost_after_the_childs_commit_is_made_again(memory: MemoryRuntime) -> None:
    """The child commits its end, then the process dies before the report is scheduled:
    the child's delivery comes again, finds itself stale and schedules the report."""
    real_schedule = memory.scheduler.schedule
    dropped: list[Delivery] = []

    def lossy(delivery: Delivery) -> None:
        record = memory.store.load_run(delivery.run_id)
        ended_child = (
            record is not None
            and record.status.is_terminal
            and "parentRun" in record.snapshot.metadata
            and not dropped
        )
        if ended_child:
            dropped.append(delivery)
            raise ConnectionError("crashed after the commit, before the report")
        real_schedule(delivery)

    memory.scheduler.schedule = lossy  # type: ignore[method-assign]
    memory.dispatcher.children.scheduler = memory.scheduler
    start_map(memory, [{"x": 1}, {"x": 2}], concurrency=2)
    memory.app.clock.advance(5_000)  # type: ignore[attr-defined]
    memory.drain()
    memory.app.clock.advance(5_000)  # type: ignore[attr-defined]
    memory.drain()
    assert dropped, "the fault was not injected"
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "m") == [{"y": 2}, {"y": 4}]


def test_a_run_holding_a_childs_id_fails_that_child_not_the_map(memory: MemoryRuntime) -> None:
    # Callers cannot take such an id (below); a run created under it otherwise (an older
    # version, another app on the same store) fails that one child, not the map.
    squatter = memory.service.start("item", {"x": 100}, run_id="squatter").record
    memory.store.create_run(dataclasses.replace(squatter, run_id=child_run_id("p", 2, 1)))
    start_map(memory, [{"x": 1}, {"x": 2}])
    memory.drain()
    output = output_of(memory, "p", "m")
    assert output[0] == {"y": 2}
    assert "is taken by another run" in output[1]["error"]


@pytest.mark.parametrize("run_id", ["p.2.1", "a.b.0.15", "child-" + "0" * 40])
def test_a_caller_cannot_take_a_child_run_id(memory: MemoryRuntime, run_id: str) -> None:
    with pytest.raises(RunConflict, match="has the shape of a child run's id"):
        memory.service.start("item", {"x": 1}, run_id=run_id)


def test_an_empty_map_goes_on_at_once(memory: MemoryRuntime) -> None:
    start_map(memory, [])
    memory.drain()
    assert output_of(memory, "p", "m") == []
    assert children_of(memory) == []


@pytest.mark.parametrize(
    ("items", "workflow", "concurrency", "message"),
    [
        ("nope", "item", 2, "map needs 'items' as a list, got str"),
        ([1], "missing", 2, "unknown workflow 'missing'"),
        ([1], "item", 0, "concurrency must be a whole number from 1 to 1000, got 0"),
        ([1], "item", 1001, "concurrency must be a whole number from 1 to 1000"),
    ],
)
def test_bad_map_data_fails_the_node_with_a_clear_reason(
    memory: MemoryRuntime, items: Any, workflow: str, concurrency: int, message: str
) -> None:
    start_map(memory, items, workflow=workflow, concurrency=concurrency)
    memory.drain()
    parent = memory.service.get("p")
    assert parent.status == SnapshotStatus.FAILED
    assert message in parent.snapshot.metadata["failedReason"]
    assert children_of(memory) == []


def test_a_thousand_children_on_the_embedded_default(tmp_path: Path, clock: FakeClock) -> None:
    app = build_app(clock)
    with EmbeddedRuntime(app, tmp_path / "db.sqlite", workers=0, synchronous="OFF") as runtime:
        start_map(runtime, [{"x": i} for i in range(1000)], concurrency=50)
        while runtime.scheduler.drain():
            pass
        assert runtime.service.get("p").status == SnapshotStatus.COMPLETED
        assert output_of(runtime, "p", "m") == [{"y": 2 * i} for i in range(1000)]
        rows = runtime.db.connection().execute("SELECT count(*) FROM runs").fetchone()
        assert rows[0] == 1001


def test_a_report_a_queue_dropped_is_scheduled_again_by_the_reconciler(
    memory: MemoryRuntime, clock: FakeClock
) -> None:
    """A queue that gives up on a task (Cloud Tasks deletes it after its last attempt)
    drops a child's report: the ended child is overdue, and the reconciler reports it."""
    dropped: list[str] = []
    real_schedule = memory.scheduler.schedule

    def dropping(delivery: Delivery) -> None:
        record = memory.store.load_run(delivery.run_id)
        if (
            record is not None
            and record.status.is_terminal
            and "parentRun" in record.snapshot.metadata
        ):
            dropped.append(delivery.run_id)  # accepted, then lost: never delivered
            return
        real_schedule(delivery)

    memory.scheduler.schedule = dropping  # type: ignore[method-assign]
    start_map(memory, [{"x": 1}, {"x": 2}], concurrency=2)
    memory.drain()
    assert sorted(dropped) == [child_run_id("p", 2, 0), child_run_id("p", 2, 1)]
    assert memory.service.get("p").status == SnapshotStatus.PAUSED
    memory.scheduler.schedule = real_schedule  # type: ignore[method-assign]
    clock.advance(11 * 60_000)
    report = memory.service.reconcile(grace_ms=10 * 60_000)
    assert report.rescheduled == 2
    memory.drain()
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "m") == [{"y": 2}, {"y": 4}]
    # Reported children and the finished parent are no longer overdue.
    clock.advance(11 * 60_000)
    assert memory.service.reconcile(grace_ms=10 * 60_000).rescheduled == 0


def test_a_start_a_queue_dropped_is_scheduled_again_by_the_reconciler(
    memory: MemoryRuntime, clock: FakeClock
) -> None:
    real_schedule = memory.scheduler.schedule
    dropped: list[Delivery] = []

    def dropping(delivery: Delivery) -> None:
        record = memory.store.load_run(delivery.run_id)
        if record is not None and record.status == SnapshotStatus.PAUSED and not dropped:
            dropped.append(delivery)
            return
        real_schedule(delivery)

    memory.scheduler.schedule = dropping  # type: ignore[method-assign]
    start_map(memory, [{"x": 3}])
    memory.drain()
    assert dropped
    assert children_of(memory) == []
    clock.advance(11 * 60_000)
    assert memory.service.reconcile(grace_ms=10 * 60_000).rescheduled == 1
    memory.drain()
    assert output_of(memory, "p", "m") == [{"y": 6}]


def test_a_workflow_that_starts_itself_fails_at_the_depth_limit(memory: MemoryRuntime) -> None:
    memory.app.workflow(
        "forever",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "again", "type": "call", "data": {"workflow": "forever"}},
            ],
            "edges": [{"source": "start", "target": "again"}],
        },
    )
    memory.service.start("forever", {}, run_id="r")
    memory.drain()
    runs = memory.service.list(limit=100).runs
    assert len(runs) == 11  # the run and 10 levels of children
    deepest = max(runs, key=lambda run: run.run_id.count("."))
    assert "nest 11 levels deep, and the limit is 10" in deepest.snapshot.metadata["failedReason"]
    assert memory.service.get("r").status == SnapshotStatus.FAILED
    assert "(run r.2.0) failed" in memory.service.get("r").snapshot.metadata["failedReason"]


def test_a_busy_child_is_cancelled_between_two_of_its_steps(
    memory: MemoryRuntime, clock: FakeClock
) -> None:
    """A cancel that loses its optimistic lock to a child committing a step reads the
    child again and lands before the child's next step."""
    memory.app.workflow(
        "steps",
        {
            "nodes": [{"id": "start", "type": "trigger"}]
            + [{"id": f"s{i}", "type": "trigger", "data": i} for i in range(6)],
            "edges": [{"source": "start", "target": "s0"}]
            + [{"source": f"s{i}", "target": f"s{i + 1}"} for i in range(5)],
        },
    )
    start_map(memory, [{}], workflow="steps", concurrency=1)
    child_id = child_run_id("p", 2, 0)
    while (child := memory.store.load_run(child_id)) is None or child.result_count < 2:
        delivery = memory.scheduler.due(clock())[0]
        memory.service.deliver(delivery)
        memory.scheduler.acknowledge(delivery)
    real_commit = memory.store.commit
    raced: list[int] = []

    def child_steps_first(commit: Any) -> Any:
        if commit.run_id == child_id and "cancelledAt" in commit.snapshot.metadata and not raced:
            for delivery in memory.scheduler.due(clock()):
                if delivery.run_id == child_id:  # the child's next step commits first
                    memory.service.deliver(delivery)
                    memory.scheduler.acknowledge(delivery)
                    raced.append(delivery.version)
        return real_commit(commit)

    memory.store.commit = child_steps_first  # type: ignore[method-assign]
    memory.service.cancel("p")
    memory.drain()
    assert raced, "the race was not set up"
    child = memory.service.get(child_id)
    assert child.status == SnapshotStatus.FAILED
    assert "its parent run was cancelled" in child.snapshot.metadata["failedReason"]
    assert child.result_count < 7  # it did not run to its end
    parent = memory.service.get("p")
    assert parent.snapshot.metadata["childRuns"]["cancelled"] is True
    assert parent.snapshot.metadata["childRuns"]["waiting"] is False


def test_a_run_tree_shares_one_budget_of_descendants(clock: FakeClock) -> None:
    app = build_app(clock)
    app.limits = dataclasses.replace(app.limits, max_descendants=30)
    app.workflow(
        "spread",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "m",
                    "type": "map",
                    "data": {"items": [{}, {}, {}], "workflow": "spread", "concurrency": 3},
                },
            ],
            "edges": [{"source": "start", "target": "m"}],
        },
    )
    runtime = MemoryRuntime(app)
    runtime.service.start("spread", {}, run_id="r")
    runtime.drain()
    runs = runtime.service.list(limit=1000).runs
    # 3 children (budget 9 each), 9 grandchildren (budget 2 each: fewer than 3 items).
    assert len(runs) == 1 + 3 + 9
    refused = [run for run in runs if run.run_id.count(".") == 4]
    assert len(refused) == 9
    assert all(
        "cannot start 3 child runs: its run tree may start 2 more"
        in run.snapshot.metadata["failedReason"]
        for run in refused
    )
    assert runtime.service.get("r").status == SnapshotStatus.FAILED


class RetryMaps(DefaultErrorHandler):
    """Retries a failed ``map`` node at once, up to five attempts (the built-in child nodes
    have no retry policy of their own)."""

    def should_retry(self, error: BaseException, attempt: int, node: Any, definition: Any) -> bool:
        return node.type == "map" and attempt <= 5

    def get_retry_delay(self, attempt: int, node: Any, definition: Any) -> int:
        return 0


def looping(child: str, items: list[Any], passes: int, **map_data: Any) -> dict[str, Any]:
    """A workflow that maps over ``items`` (children of ``child``), ``passes`` times in a
    loop (the node type ``count`` of :func:`looping_map_app` decides)."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "m", "type": "map", "data": {"items": items, "workflow": child, **map_data}},
            {"id": "k", "type": "count", "data": {"passes": passes}},
        ],
        "edges": [
            {"source": "start", "target": "m"},
            {"source": "m", "target": "k"},
            {"source": "k", "target": "m", "sourceHandle": "again"},
        ],
    }


def looping_map_app(clock: FakeClock, max_descendants: int, passes: int, items: int) -> App:
    """An app whose "loop" maps over ``items`` children of "leaf" (or, for "outer", over
    2 children of "loop"), ``passes`` times in a loop."""
    app = build_app(clock)
    app.limits = dataclasses.replace(app.limits, max_descendants=max_descendants)

    @app.node(handles=["again", "done"])
    def count(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        done = len(context.get("m", []))
        return StepResult(done, next_handle="again" if done < data["passes"] else "done")

    app.workflow("leaf", {"nodes": [{"id": "start", "type": "trigger"}], "edges": []})
    app.workflow("loop", looping("leaf", [{}] * items, passes))
    app.workflow("outer", looping("loop", [{}] * 2, passes))
    return app


def test_a_map_in_a_loop_waits_on_what_its_earlier_waits_left_of_the_budget(
    clock: FakeClock,
) -> None:
    """Each pass of a loop takes its children from what is left: 5 + 5 of a budget of 10,
    and the third pass is refused (every pass took the whole budget again before)."""
    runtime = MemoryRuntime(looping_map_app(clock, max_descendants=10, passes=6, items=5))
    runtime.service.start("loop", {}, run_id="r")
    runtime.drain()
    run = runtime.service.get("r")
    assert run.status == SnapshotStatus.FAILED
    assert (
        "cannot start 5 child runs: its run tree may start 0 more"
        in (run.snapshot.metadata["failedReason"])
    )
    children = [r for r in runtime.service.list(limit=1000).runs if r.run_id != "r"]
    assert len(children) == 10


def test_a_child_s_loop_spends_its_share_and_its_parent_counts_what_it_spent(
    clock: FakeClock,
) -> None:
    """A budget of 30: "outer" maps 2 children (14 descendants each), each looping twice
    over 5 leaves (10 each). The join counts 2 + 20, so the second pass of "outer" has 8
    left: 3 for each new child, too few for their first map of 5."""
    runtime = MemoryRuntime(looping_map_app(clock, max_descendants=30, passes=2, items=5))
    runtime.service.start("outer", {}, run_id="r")
    runtime.drain()
    runs = runtime.service.list(limit=1000).runs
    assert len(runs) - 1 <= 30
    first = [r for r in runs if r.run_id.count(".") == 2 and r.run_id.startswith("r.2.")]
    assert [r.status for r in first] == [SnapshotStatus.COMPLETED] * 2
    assert all(r.snapshot.metadata["childRuns"]["descendants"] == 10 for r in first)
    second = [r for r in runs if r.run_id.count(".") == 2 and not r.run_id.startswith("r.2.")]
    assert len(second) == 2
    assert all(
        "cannot start 5 child runs: its run tree may start 3 more"
        in r.snapshot.metadata["failedReason"]
        for r in second
    )
    assert len(runs) == 1 + 2 + 20 + 2


def test_a_cancelled_middle_run_reports_what_its_wait_took(clock: FakeClock) -> None:
    """A run cancelled while it waits reports to its parent what its wait took (it
    reported only its earlier, joined waits: a root looping over such runs grew without
    end): the tree stops at the limit."""
    app = looping_map_app(clock, max_descendants=20, passes=10, items=1)

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"q": 1}, pause=True) if payload is None else StepResult(payload)

    app.workflow(
        "asking",
        {
            "nodes": [{"id": "start", "type": "trigger"}, {"id": "q", "type": "ask"}],
            "edges": [{"source": "start", "target": "q"}],
        },
    )
    app.workflow(
        "middle",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "m", "type": "map", "data": {"items": [{}] * 5, "workflow": "asking"}},
            ],
            "edges": [{"source": "start", "target": "m"}],
        },
    )
    app.workflow("root", looping("middle", [{}], 10, failure="collect"))
    runtime = MemoryRuntime(app)
    runtime.service.start("root", {}, run_id="r")
    for _ in range(12):
        runtime.drain()
        waiting = [
            run
            for run in runtime.service.list(limit=1000).runs
            if run.workflow == "middle" and not run.status.is_terminal
        ]
        for run in waiting:
            runtime.service.cancel(run.run_id, "stop the middle")
    runtime.drain()
    descendants = [run for run in runtime.service.list(limit=1000).runs if run.run_id != "r"]
    assert len(descendants) <= 20
    root = runtime.service.get("r")
    assert root.status == SnapshotStatus.FAILED
    assert "may start 0 more" in root.snapshot.metadata["failedReason"]
    assert root.snapshot.metadata["childRuns"]["descendants"] == len(descendants)


def completed_root(app: App) -> tuple[MemoryRuntime, RunRecord]:
    """``app``'s workflow ``root`` run to its end, which must be a completion."""
    runtime = MemoryRuntime(app)
    runtime.service.start("root", {}, run_id="r")
    runtime.drain()
    root = runtime.service.get("r")
    assert root.status == SnapshotStatus.COMPLETED, root.snapshot.metadata.get("failedReason")
    return runtime, root


def test_a_retried_map_of_runs_that_start_none_is_charged_what_it_started(
    clock: FakeClock,
) -> None:
    """A fail_fast map joined early by a failure, retried: only the children it started
    count, and none of them a share, since its workflow starts no child runs (each early
    join took about a whole budget before, and three failures refused a tree of 30)."""
    app = looping_map_app(clock, max_descendants=1_000, passes=3, items=0)
    failures: list[int] = []

    app.error_handler = RetryMaps()

    @app.node()
    def work(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = context["start"][-1].output["i"]
        if index == 0 and len(failures) < 3:
            failures.append(index)
            raise ValueError("transient")
        return StepResult(index)

    app.workflow(
        "working",
        {
            "nodes": [{"id": "start", "type": "trigger"}, {"id": "w", "type": "work"}],
            "edges": [{"source": "start", "target": "w"}],
        },
    )
    app.workflow("root", looping("working", [{"i": i} for i in range(100)], 3))
    runtime, root = completed_root(app)
    assert len(failures) == 3
    started = len(runtime.service.list(limit=1000).runs) - 1
    taken = root.snapshot.metadata["childRuns"]["descendants"]
    assert started <= taken <= started + 3 * 10  # at most a concurrency's worth per early join


def test_a_fail_fast_join_charges_no_child_that_the_failure_did_not_start(
    clock: FakeClock,
) -> None:
    """One child at a time, the first fails: the join comes at once and starts nobody
    after it. Charging one more child (and its share) per early join made three retries of
    a tree of 25 use up a budget of 100."""
    app = build_app(clock)
    app.limits = dataclasses.replace(app.limits, max_descendants=100)
    failures: list[int] = []

    app.error_handler = RetryMaps()

    @app.node()
    def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if context["start"][-1].output.get("i") == 0 and len(failures) < 3:
            failures.append(1)
            raise ValueError("transient")
        return StepResult(1)

    app.workflow("leaf", {"nodes": [{"id": "start", "type": "trigger"}], "edges": []})
    app.workflow(
        "spreading",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "f", "type": "flaky"},
                {"id": "m", "type": "map", "data": {"items": [{}] * 10, "workflow": "leaf"}},
            ],
            "edges": [{"source": "start", "target": "f"}, {"source": "f", "target": "m"}],
        },
    )
    app.workflow(
        "root",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "m",
                    "type": "map",
                    "data": {
                        "items": [{"i": 0}, {"i": 1}],
                        "workflow": "spreading",
                        "concurrency": 1,
                    },
                },
            ],
            "edges": [{"source": "start", "target": "m"}],
        },
    )
    runtime, root = completed_root(app)
    assert len(failures) == 3
    descendants = len(runtime.service.list(limit=1000).runs) - 1
    assert descendants == 3 + 2 + 20
    assert root.snapshot.metadata["childRuns"]["descendants"] == descendants


def test_runtime_limits_refuse_what_bounds_nothing() -> None:
    for bad in (0, -5, True, 1.5, 2**53):
        with pytest.raises(ValueError, match="max_descendants must be a whole number"):
            RuntimeLimits(max_descendants=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from 1 to 2\\*\\*53 - 1, got 100000000000000000000"):
        RuntimeLimits(max_descendants=10**20)


def test_cancelling_the_root_of_a_growing_tree_stops_every_level_at_once(
    memory: MemoryRuntime, clock: FakeClock
) -> None:
    """A workflow that maps over itself, one child at a time: each level keeps starting
    children while the cancel's cascade goes down one level per delivery. Once the root
    is cancelled, no run anywhere in its tree starts another."""
    memory.app.workflow(
        "spread",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "m",
                    "type": "map",
                    "data": {
                        "items": [{}, {}, {}],
                        "workflow": "spread",
                        "concurrency": 1,
                        "failure": "collect",
                    },
                },
            ],
            "edges": [{"source": "start", "target": "m"}],
        },
    )
    memory.service.start("spread", {}, run_id="r")
    for _ in range(200):  # the tree grows a few levels deep
        delivery = memory.scheduler.due(clock())[0]
        memory.service.deliver(delivery)
        memory.scheduler.acknowledge(delivery)
    before = {run.run_id for run in memory.service.list(limit=10_000).runs}
    assert max(run_id.count(".") for run_id in before) >= 8, "the tree did not grow deep"
    assert memory.service.get("r").status == SnapshotStatus.PAUSED
    memory.service.cancel("r", "stop")
    memory.drain()
    after = memory.service.list(limit=10_000).runs
    assert {run.run_id for run in after} == before  # not one more run
    assert all(run.status.is_terminal for run in after)  # nothing left waiting or running
    cancelled = [run for run in after if "cancelledAt" in run.snapshot.metadata]
    assert len(cancelled) >= 8  # a waiting chain of 8 levels and more
    reasons = {run.snapshot.metadata["failedReason"] for run in cancelled if run.run_id != "r"}
    assert reasons <= {
        "Cancelled: its parent run was cancelled",
        "Cancelled: the run at the top of its tree no longer waits for it (cancelled, or "
        "joined early)",
    }


def test_a_cancel_that_loses_to_another_cancel_says_the_run_ended(memory: MemoryRuntime) -> None:
    start_map(memory, [{"x": 1}], workflow="waits", concurrency=1)
    memory.drain()
    record = memory.service.get("p")
    memory.service.cancel("p", "first")
    real_get = memory.service.get
    reads = iter([record])  # the second cancel read the run before the first landed
    memory.service.get = lambda run_id: next(reads, None) or real_get(run_id)  # type: ignore
    with pytest.raises(RunConflict, match="'p' is already failed"):
        memory.service.cancel("p", "second")
    assert real_get("p").snapshot.metadata["failedReason"] == "first"


@pytest.mark.parametrize("how", ["a branch fails", "a middle run is cancelled"])
def test_a_tree_whose_root_stops_waiting_ends_every_run(memory: MemoryRuntime, how: str) -> None:
    """Branches that wait for children paused for a resume, beside a branch that fails
    (or a middle run a caller cancels): the root joins early under fail_fast, and every
    run of the tree ends; none is left waiting for a resume nobody will send."""
    app = memory.app

    @app.node()
    def boom(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("bad item")

    def two(node: dict[str, Any]) -> dict[str, Any]:
        return {
            "nodes": [{"id": "start", "type": "trigger"}, node],
            "edges": [{"source": "start", "target": node["id"]}],
        }

    app.workflow("bad", two({"id": "b", "type": "boom"}))
    app.workflow(
        "middle",
        two(
            {
                "id": "m",
                "type": "map",
                "data": {"items": [{}] * 4, "workflow": "waits", "concurrency": 2},
            }
        ),
    )
    third = "bad" if how == "a branch fails" else "waits"
    branches = {"x": "middle", "y": "middle", "z": third}
    app.workflow("root", two({"id": "p", "type": "parallel", "data": {"branches": branches}}))
    memory.service.start("root", {}, run_id="r")
    memory.drain()
    if how == "a middle run is cancelled":
        memory.service.cancel("r.2.0", "enough")
        memory.drain()
    runs = memory.service.list(limit=1000).runs
    assert len(runs) == 1 + 3 + 4  # the root, its branches, two children of each middle run
    assert [run.run_id for run in runs if not run.status.is_terminal] == []
    root = memory.service.get("r")
    assert root.status == SnapshotStatus.FAILED
    failed = "r.2.2" if how == "a branch fails" else "r.2.0"
    assert f"(run {failed}) failed" in root.snapshot.metadata["failedReason"]


class _ReportsLate:
    """A store whose ``record_child_end`` first lets ``before`` run: another copy of the
    same delivery overtakes this one between its read of the parent and its join."""

    def __init__(self, inner: Any, before: Any) -> None:
        self.inner = inner
        self.before = before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def record_child_end(self, *args: Any) -> Any:
        before, self.before = self.before, lambda: None
        before()
        return self.inner.record_child_end(*args)


class _DiesBeforeScheduling:
    """A scheduler whose process dies when it schedules a delivery of ``run_id``."""

    def __init__(self, inner: Any, run_id: str) -> None:
        self.inner = inner
        self.run_id = run_id
        self.died = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def schedule(self, delivery: Delivery) -> None:
        if delivery.run_id == self.run_id:
            self.died += 1
            raise ConnectionError("the process died after its commit, before scheduling")
        self.inner.schedule(delivery)


def test_a_join_whose_joiner_died_before_scheduling_is_scheduled_by_the_copy_that_lost(
    memory: MemoryRuntime,
) -> None:
    """Two copies of the last child's report run at once. The first joins the parent and
    dies before scheduling its next step (so its copy is not acknowledged); the second,
    which read the parent while it still waited, loses the join and is acknowledged. The
    parent's next step must not have depended on the first copy."""
    start_map(memory, [{"x": 1}], concurrency=1)
    report: Delivery | None = None
    while report is None and (due := memory.scheduler.due(memory.app.clock())):
        for delivery in due:
            record = memory.store.load_run(delivery.run_id)
            if delivery.run_id != "p" and record is not None and record.status.is_terminal:
                report = delivery
                break
            memory.service.deliver(delivery)
            memory.scheduler.acknowledge(delivery)
    assert report is not None, "the child's report was never due"
    dying = _DiesBeforeScheduling(memory.scheduler, "p")
    first = RunService(Dispatcher(memory.app, memory.store, dying))

    def first_copy_joins_and_dies() -> None:
        with pytest.raises(ConnectionError):
            first.deliver(report)

    second = RunService(
        Dispatcher(
            memory.app, _ReportsLate(memory.store, first_copy_joins_and_dies), memory.scheduler
        )
    )
    second.deliver(report)
    memory.scheduler.acknowledge(report)
    assert dying.died == 1, "the first copy did not join"
    memory.drain()
    assert memory.service.get("p").status == SnapshotStatus.COMPLETED
    assert output_of(memory, "p", "m") == [{"y": 2}]
    assert len(children_of(memory)) == 1


def test_a_fail_fast_join_whose_joiner_died_still_cancels_the_other_children(
    memory: MemoryRuntime,
) -> None:
    """A failed child joins its parent at once; the process dies right after that commit,
    before scheduling anything. The children still running are cancelled all the same:
    the parent's next step, which is redelivered until it commits, cancels them."""
    real_schedule = memory.scheduler.schedule
    died: list[Delivery] = []

    def dies_after_the_join(delivery: Delivery) -> None:
        record = memory.store.load_run(delivery.run_id)
        joined = (
            delivery.run_id == "p"
            and record is not None
            and record.pending is not None
            and record.pending.source == "children"
        )
        if joined and not died:
            died.append(delivery)
            raise ConnectionError("the process died after the join's commit")
        real_schedule(delivery)

    memory.scheduler.schedule = dies_after_the_join  # type: ignore[method-assign]
    memory.dispatcher.children.scheduler = memory.scheduler
    # Child 0 pauses (it would wait forever); child 1 gets no input and fails.
    start_map(
        memory,
        [{"wf": "waits"}, {"wf": "item"}],
        failure="fail_fast",
        concurrency=2,
        workflow="mixed",
    )
    for _ in range(3):
        memory.drain()
        memory.app.clock.advance(5_000)  # type: ignore[attr-defined]
    assert died, "the fault was not injected"
    parent = memory.service.get("p")
    assert parent.status == SnapshotStatus.FAILED
    version = wait_version(parent)
    waiting = memory.service.get(child_run_id("p", version, 0))
    assert waiting.status == SnapshotStatus.FAILED
    assert waiting.snapshot.metadata["failedReason"].startswith("Cancelled: a sibling")


@pytest.mark.parametrize("concurrency", [None, 3.0], ids=["null-is-the-default", "3.0-is-3"])
def test_a_concurrency_expression_giving_null_or_a_whole_float_is_accepted(
    memory: MemoryRuntime, concurrency: Any
) -> None:
    start_map(memory, [{"x": i} for i in range(4)], concurrency=concurrency)
    memory.drain()
    assert output_of(memory, "p", "m") == [{"y": 2 * i} for i in range(4)]


def test_a_middle_run_whose_children_end_after_the_root_was_cancelled_does_not_go_on(
    memory: MemoryRuntime,
) -> None:
    """The root is cancelled; its cancel goes down the tree one delivery per level, and
    before it reaches the middle run, the middle run's last child ends. The middle run
    must not join and complete: it is cancelled there, as the root's tree is."""
    middle_input = {"items": [{}], "workflow": "waits", "concurrency": 1}
    start_map(memory, [middle_input], workflow="map_collect", concurrency=1, run_id="top")
    memory.drain()
    middle = child_run_id("top", wait_version(memory.service.get("top")), 0)
    leaf = child_run_id(middle, wait_version(memory.service.get(middle)), 0)
    assert memory.service.get(leaf).status == SnapshotStatus.PAUSED
    memory.service.cancel("top", "enough")
    memory.service.resume(leaf, {"answer": 1})
    # Everything but the root's own deliveries (its cascade) goes first.
    while due := [d for d in memory.scheduler.due(memory.app.clock()) if d.run_id != "top"]:
        for delivery in due:
            memory.service.deliver(delivery)
            memory.scheduler.acknowledge(delivery)
    stopped = memory.service.get(middle)
    assert stopped.status == SnapshotStatus.FAILED
    assert stopped.snapshot.metadata["failedReason"].startswith("Cancelled: the run at the top")
    assert [e.node_id for e in memory.service.timeline(middle)] == ["start"]
    memory.drain()
    assert [
        run.run_id for run in memory.service.list(limit=100).runs if not run.status.is_terminal
    ] == []
