"""Wire compatibility with @refluxo/core snapshots, and property-based checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import refluxo
from refluxo import NodeResult, RetryState, Snapshot, StepResult, WorkflowEngine
from tests.support.engine import echo

DATA = Path(__file__).parent.parent / "data"

WIRE_KEYS = {
    "workflowId",
    "status",
    "currentNodeId",
    "context",
    "version",
    "lastStartedAt",
    "totalExecutionTime",
    "metadata",
    "retryState",
}


def test_a_typescript_snapshot_reads_and_writes_back_identically() -> None:
    raw = json.loads((DATA / "ts_snapshot_error.json").read_text())
    snapshot = Snapshot.model_validate(raw)
    assert snapshot.status == "error"
    assert snapshot.retry_state == RetryState("charge", 1, 1732400001100)
    assert snapshot.context["charge"][0].error == "Error: card declined"
    assert snapshot.model_dump(mode="json", by_alias=True) == raw
    assert json.loads(snapshot.model_dump_json()) == raw


async def test_a_typescript_snapshot_resumes_here() -> None:
    raw = json.loads((DATA / "ts_snapshot_error.json").read_text())
    engine = WorkflowEngine(
        {
            "nodes": [{"id": "start", "type": "echo"}, {"id": "charge", "type": "pay"}],
            "edges": [{"id": "e1", "source": "start", "target": "charge"}],
        },
        {"echo": {"executor": echo}, "pay": {"executor": lambda *_: StepResult({"paid": True})}},
    )
    final = await engine.execute(snapshot=Snapshot.model_validate(raw))
    assert final.status == "completed"
    assert final.context["charge"][-1] == NodeResult(
        output={"paid": True}, timestamp=final.context["charge"][-1].timestamp, attempt=2
    )
    dumped = final.model_dump(mode="json")
    assert set(dumped) <= WIRE_KEYS
    assert "retryState" not in dumped


def test_snake_case_input_is_accepted() -> None:
    snapshot = Snapshot.model_validate(
        {
            "workflow_id": "w",
            "status": "paused",
            "current_node_id": "a",
            "retry_state": {"node_id": "a", "attempts": 2},
        }
    )
    assert snapshot.retry_state is not None
    assert snapshot.retry_state.attempts == 2
    assert snapshot.model_dump(mode="json")["retryState"] == {"nodeId": "a", "attempts": 2}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
results = st.builds(
    lambda output, ts, attempt, error: {
        "output": output,
        "timestamp": ts,
        "attempt": attempt,
        **({"error": error} if error is not None else {}),
    },
    json_values,
    st.integers(0, 2**45),
    st.integers(1, 10),
    st.none() | st.text(max_size=10),
)
snapshots = st.fixed_dictionaries(
    {
        "workflowId": st.text(min_size=1, max_size=10),
        "status": st.sampled_from(["active", "paused", "error", "completed", "failed"]),
        "currentNodeId": st.none() | st.text(min_size=1, max_size=5),
        "context": st.dictionaries(
            st.text(min_size=1, max_size=5), st.lists(results, max_size=3), max_size=4
        ),
        "version": st.integers(0, 10**6),
        "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    },
    optional={
        "lastStartedAt": st.integers(0, 2**45),
        "totalExecutionTime": st.integers(0, 2**40),
        "retryState": st.fixed_dictionaries(
            {"nodeId": st.text(min_size=1, max_size=5), "attempts": st.integers(1, 9)},
            optional={"nextRetryAt": st.integers(0, 2**45)},
        ),
    },
)


@given(snapshots)
def test_wire_round_trip_is_lossless(raw: dict[str, Any]) -> None:
    snapshot = Snapshot.model_validate(raw)
    assert snapshot.model_dump(mode="json", by_alias=True) == raw
    assert Snapshot.model_validate_json(snapshot.model_dump_json()) == snapshot


@st.composite
def random_workflows(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    count = draw(st.integers(1, 8))
    ids = [f"n{i}" for i in range(count)]
    edges = draw(
        st.lists(
            st.tuples(
                st.sampled_from(ids), st.sampled_from(ids), st.sampled_from([None, "x", "y"])
            ),
            max_size=16,
        )
    )
    handles = draw(st.lists(st.sampled_from([None, "x", "y"]), min_size=count, max_size=count))
    workflow = {
        "nodes": [
            {"id": i, "type": "route", "data": {"handle": h}}
            for i, h in zip(ids, handles, strict=True)
        ],
        "edges": [{"source": s, "target": t, "sourceHandle": h} for s, t, h in edges],
    }
    return workflow, ids


@settings(max_examples=60, deadline=None)
@given(random_workflows(), st.integers(1, 40))
async def test_random_graphs_end_within_the_step_limit(
    case: tuple[dict[str, Any], list[str]], limit: int
) -> None:
    workflow, ids = case
    engine = WorkflowEngine(
        workflow,
        {"route": {"executor": lambda d, *_: StepResult(d["handle"], next_handle=d["handle"])}},
    )
    final = await engine.execute(initial_node_id=ids[0], step_limit=limit)
    steps = sum(len(r) for r in final.context.values())
    assert steps <= limit
    assert final.status in ("completed", "failed")
    if final.status == "failed":
        assert final.metadata["failedReason"] == "Step limit exceeded"
        assert steps == limit
    assert Snapshot.model_validate_json(final.model_dump_json()) == final


def test_public_api_is_pinned() -> None:
    required = {
        "WorkflowEngine",
        "WorkflowDefinition",
        "Node",
        "Edge",
        "NodeDefinition",
        "RetryPolicy",
        "StepResult",
        "Snapshot",
        "NodeResult",
        "RetryState",
        "Validator",
        "ValidationResult",
        "SchemaValidator",
        "TransformEngine",
        "ErrorHandler",
        "DefaultErrorHandler",
        "Plugin",
        "PluginContext",
        "ErrorPluginContext",
    }
    assert required <= set(refluxo.__all__)
    for name in refluxo.__all__:
        assert hasattr(refluxo, name), name
    from refluxo.expressions import JexlTransformEngine, validate_expression

    assert callable(validate_expression)
    assert issubclass(JexlTransformEngine, refluxo.TransformEngine)
