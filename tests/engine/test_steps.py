"""Step semantics: success, branching, loops, completion, versions, payloads."""

from __future__ import annotations

from typing import Any

import pytest

from refluxo import (
    NodeDefinition,
    NodeResult,
    Snapshot,
    SnapshotStatus,
    StepResult,
    WorkflowDefinitionError,
    WorkflowEngine,
)
from tests.support.clock import FakeClock
from tests.support.engine import chain, echo


async def test_chain_runs_each_node_once_in_order(clock: FakeClock) -> None:
    seen: list[str] = []

    def record(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        seen.append(data["name"])
        return StepResult({"name": data["name"]})

    engine = WorkflowEngine(chain("a", "b", "c"), {"echo": NodeDefinition(record)}, clock=clock)
    final = await engine.execute(initial_node_id="a")

    assert seen == ["a", "b", "c"]
    assert final.status == "completed"
    assert final.current_node_id is None
    assert final.workflow_id == "default"
    assert final.context["c"] == [NodeResult(output={"name": "c"}, timestamp=clock.now, attempt=1)]
    assert final.version == 3


async def test_branch_follows_the_edge_with_the_returned_handle() -> None:
    workflow = {
        "nodes": [
            {"id": "check", "type": "decide", "data": {"value": 7}},
            {"id": "big", "type": "echo", "data": {"name": "big"}},
            {"id": "small", "type": "echo", "data": {"name": "small"}},
        ],
        "edges": [
            {"source": "check", "target": "big", "sourceHandle": "big"},
            {"source": "check", "target": "small", "source_handle": "small"},
        ],
    }

    def decide(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
        return {"data": None, "nextHandle": "big" if data["value"] > 5 else "small"}

    engine = WorkflowEngine(workflow, {"decide": {"executor": decide}, "echo": {"executor": echo}})
    final = await engine.execute(initial_node_id="check")

    assert final.status == "completed"
    assert "big" in final.context
    assert "small" not in final.context


async def test_a_handle_without_matching_edge_completes_the_run() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "t"}],
        "edges": [{"source": "a", "target": "b", "sourceHandle": "yes"}],
    }
    engine = WorkflowEngine(workflow, {"t": {"executor": lambda *_: {"data": 1}}})
    final = await engine.execute(initial_node_id="a")
    assert final.status == "completed"
    assert list(final.context) == ["a"]


async def test_none_handle_only_matches_edges_without_a_handle() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "t"}, {"id": "c", "type": "t"}],
        "edges": [
            {"source": "a", "target": "b", "sourceHandle": "x"},
            {"source": "a", "target": "c"},
        ],
    }
    engine = WorkflowEngine(workflow, {"t": {"executor": lambda *_: StepResult(None)}})
    final = await engine.execute(initial_node_id="a")
    assert sorted(final.context) == ["a", "c"]


async def test_first_matching_edge_wins_like_refluxo() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "t"}, {"id": "c", "type": "t"}],
        "edges": [{"source": "a", "target": "c"}, {"source": "a", "target": "b"}],
    }
    engine = WorkflowEngine(workflow, {"t": {"executor": lambda *_: StepResult(None)}})
    final = await engine.execute(initial_node_id="a")
    assert sorted(final.context) == ["a", "c"]


async def test_loop_keeps_every_iteration_in_history() -> None:
    workflow = {
        "nodes": [
            {"id": "it", "type": "iterate", "data": {"items": ["x", "y", "z"]}},
            {"id": "body", "type": "echo", "data": {"tag": "body"}},
            {"id": "end", "type": "echo", "data": {"tag": "end"}},
        ],
        "edges": [
            {"source": "it", "target": "body", "sourceHandle": "loop"},
            {"source": "body", "target": "it"},
            {"source": "it", "target": "end", "sourceHandle": "done"},
        ],
    }

    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        if index < len(data["items"]):
            return StepResult({"currentItem": data["items"][index]}, next_handle="loop")
        return StepResult({"totalItems": len(data["items"])}, next_handle="done")

    engine = WorkflowEngine(
        workflow, {"iterate": {"executor": iterate}, "echo": {"executor": echo}}
    )
    final = await engine.execute(initial_node_id="it")

    assert final.status == "completed"
    assert [r.output for r in final.context["it"]] == [
        {"currentItem": "x"},
        {"currentItem": "y"},
        {"currentItem": "z"},
        {"totalItems": 3},
    ]
    assert len(final.context["body"]) == 3
    assert final.version == 8


async def test_async_and_sync_executors_mix() -> None:
    async def slow(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"async": True})

    def quick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"sync": True, "before": context["a"][-1].output})

    workflow = {
        "nodes": [{"id": "a", "type": "slow"}, {"id": "b", "type": "quick"}],
        "edges": [{"source": "a", "target": "b"}],
    }
    engine = WorkflowEngine(
        workflow, {"slow": NodeDefinition(slow), "quick": NodeDefinition(quick)}
    )
    final = await engine.execute(initial_node_id="a")
    assert final.context["b"][0].output == {"sync": True, "before": {"async": True}}


async def test_executor_receives_context_payload_and_globals() -> None:
    received: dict[str, Any] = {}

    def spy(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        received.update(data=data, context=dict(context), payload=payload, globals=globals)
        return StepResult(None)

    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "spy", "data": {"k": 1}}]}, {"spy": NodeDefinition(spy)}
    )
    await engine.execute(initial_node_id="a", external_payload={"p": 1}, globals={"token": "s"})
    assert received == {
        "data": {"k": 1},
        "context": {},
        "payload": {"p": 1},
        "globals": {"token": "s"},
    }


async def test_payload_reaches_only_the_first_step() -> None:
    payloads: list[Any] = []

    def spy(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        payloads.append(payload)
        return StepResult(None)

    engine = WorkflowEngine(chain("a", "b", "c", node_type="spy"), {"spy": NodeDefinition(spy)})
    await engine.execute(initial_node_id="a", external_payload="go")
    assert payloads == ["go", None, None]


async def test_version_increments_on_every_transition(clock: FakeClock) -> None:
    calls = {"n": 0}

    def flaky_then_pause(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first try fails")
        if payload is None:
            return StepResult(None, pause=True)
        return StepResult(payload)

    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "t"}]},
        {"t": {"executor": flaky_then_pause, "retryPolicy": {"maxAttempts": 1, "interval": 5}}},
        clock=clock,
    )
    s0 = engine.create_initial_snapshot("wf", "a")
    s1 = await engine.execute_step(s0)
    s2 = await engine.execute_step(s1)
    s3 = await engine.execute_step(s2, external_payload="ok")
    assert [s.status for s in (s0, s1, s2, s3)] == ["active", "error", "paused", "completed"]
    assert [s.version for s in (s0, s1, s2, s3)] == [0, 1, 2, 3]


async def test_failure_increments_version_too() -> None:
    def boom(*_: Any) -> StepResult:
        raise ValueError("nope")

    engine = WorkflowEngine({"nodes": [{"id": "a", "type": "t"}]}, {"t": {"executor": boom}})
    s1 = await engine.execute_step(engine.create_initial_snapshot("wf", "a"))
    assert s1.status == "failed"
    assert s1.version == 1


async def test_create_initial_snapshot(clock: FakeClock) -> None:
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": echo}}, clock=clock)
    snapshot = engine.create_initial_snapshot("wf-1", "a")
    assert snapshot.status == SnapshotStatus.ACTIVE
    as_text: str = snapshot.status  # a SnapshotStatus compares equal to its plain string
    assert as_text == "active"
    assert snapshot.workflow_id == "wf-1"
    assert snapshot.current_node_id == "a"
    assert snapshot.version == 0
    assert snapshot.context == {}
    assert snapshot.metadata == {}
    assert snapshot.last_started_at == clock.now


async def test_execute_step_with_no_current_node_completes() -> None:
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": echo}})
    snapshot = Snapshot(workflow_id="w", status="active", current_node_id=None, version=4)
    result = await engine.execute_step(snapshot)
    assert result.status == "completed"
    assert result.version == 5


async def test_execute_requires_exactly_one_start() -> None:
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": echo}})
    with pytest.raises(ValueError, match="exactly one"):
        await engine.execute()
    with pytest.raises(ValueError, match="exactly one"):
        await engine.execute(snapshot=engine.create_initial_snapshot("w", "a"), initial_node_id="a")


async def test_workflow_id_is_used_when_given() -> None:
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": echo}})
    final = await engine.execute(initial_node_id="a", workflow_id="orders")
    assert final.workflow_id == "orders"


async def test_unknown_node_raises_during_execution() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "echo"}],
        "edges": [{"source": "a", "target": "ghost"}],
    }
    engine = WorkflowEngine(workflow, {"echo": {"executor": echo}})
    with pytest.raises(WorkflowDefinitionError, match="Node not found: ghost"):
        await engine.execute(initial_node_id="a")


async def test_unknown_type_raises_during_execution() -> None:
    engine = WorkflowEngine({"nodes": [{"id": "a", "type": "mystery"}]}, {})
    with pytest.raises(WorkflowDefinitionError, match="mystery"):
        await engine.execute(initial_node_id="a")


def test_validate_workflow_names_the_missing_type() -> None:
    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "mailer"}]},
        {"echo": {"executor": echo}},
    )
    with pytest.raises(WorkflowDefinitionError, match="Node definition not found for type: mailer"):
        engine.validate_workflow()


def test_validate_workflow_rejects_dangling_edges() -> None:
    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "echo"}], "edges": [{"source": "a", "target": "nowhere"}]},
        {"echo": {"executor": echo}},
    )
    with pytest.raises(WorkflowDefinitionError, match="nowhere"):
        engine.validate_workflow()


def test_validate_workflow_accepts_a_consistent_workflow() -> None:
    WorkflowEngine(chain("a", "b"), {"echo": {"executor": echo}}).validate_workflow()


def test_duplicate_node_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate node id 'a'"):
        WorkflowEngine({"nodes": [{"id": "a", "type": "t"}, {"id": "a", "type": "t"}]}, {})


def test_definition_without_executor_is_rejected() -> None:
    with pytest.raises(WorkflowDefinitionError, match="executor"):
        WorkflowEngine(chain("a"), {"echo": {"metadata": {}}})


async def test_bad_executor_return_is_a_node_error() -> None:
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": lambda *_: 42}})
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    error = final.context["a"][0].error
    assert error is not None
    assert "must return a StepResult" in error


async def test_node_data_is_read_only_without_transforms() -> None:
    def mutate(data: Any, *_: Any) -> StepResult:
        data["name"] = "changed"
        return StepResult(data)

    engine = WorkflowEngine(chain("a"), {"echo": {"executor": mutate}})
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert "read-only" in (final.context["a"][0].error or "")
    assert engine.workflow.nodes[0].data == {"name": "a"}


async def test_timed_pause_records_resume_time() -> None:
    def wait(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True, resume_at=123_456)
        return StepResult("woke")

    engine = WorkflowEngine(chain("a", node_type="w"), {"w": {"executor": wait}})
    paused = await engine.execute(initial_node_id="a")
    assert paused.status == "paused"
    assert paused.metadata["resumeAt"] == 123_456
    done = await engine.execute(snapshot=paused, external_payload="timer")
    assert done.status == "completed"
    assert "resumeAt" not in done.metadata


async def test_execution_time_accumulates(clock: FakeClock) -> None:
    def slow(*_: Any) -> StepResult:
        clock.advance(10)
        return StepResult(None)

    engine = WorkflowEngine(chain("a", "b", node_type="s"), {"s": {"executor": slow}}, clock=clock)
    final = await engine.execute(initial_node_id="a")
    # As in Refluxo, time is accounted from one step's start to the next step's start.
    assert final.total_execution_time == 10
    assert final.last_started_at == clock.now - 10
