"""Where the same workflow ends in both engines, against the recorded TypeScript outcomes.

Each test runs a workflow of tests/data/ts_core here and states both outcomes: equal, or
different exactly as the README's differences table says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from refluxo import (
    NodeDefinition,
    NodeResult,
    RetryPolicy,
    Snapshot,
    StepResult,
    WorkflowEngine,
)
from refluxo.context import is_array_index, js_key_order
from refluxo.errors import WorkflowDefinitionError
from refluxo.expressions import JexlTransformEngine
from refluxo.graph import check_graph
from refluxo.model import WorkflowDefinition
from refluxo.validation import ValidationResult, Validator
from tests.engine.ts_core import CLOCK, Error, echo, load, noop, pay, wire

# --- A: the context iterates and serializes in JavaScript's key order ---------------------

KEY_ORDER = load("key_order.json")


def test_javascript_key_order_rule() -> None:
    assert js_key_order(KEY_ORDER["probeInsertion"]) == KEY_ORDER["probeKeys"]
    assert is_array_index("0")
    assert is_array_index("4294967294")
    not_indices = ["4294967295", "01", "-1", "1.5", "", "\u0661"]  # the last: Arabic-Indic 1
    assert not any(map(is_array_index, not_indices))


async def _key_order_run(extra: dict[str, Any] | None = None) -> tuple[Snapshot, list[Any]]:
    seen: list[Any] = []

    def record(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        seen.append(list(context))
        return StepResult(data)

    engine = WorkflowEngine(
        KEY_ORDER["workflow"], {"echo": NodeDefinition(record)}, clock=lambda: CLOCK, **extra or {}
    )
    final = await engine.execute(initial_node_id=KEY_ORDER["start"])
    return final, seen


async def test_the_context_lists_nodes_in_typescript_order_everywhere() -> None:
    final, seen = await _key_order_run()
    expected = KEY_ORDER["objectKeys"]  # ["2", "10", "b", "a", "n5", "n1"]
    assert list(final.context) == expected
    assert seen[-1] == ["2", "10", "b", "a", "n5"]  # what the last executor iterated
    assert list(final.model_dump()["context"]) == expected
    context_json = json.dumps(json.loads(final.model_dump_json())["context"], separators=(",", ":"))
    assert context_json == KEY_ORDER["contextJson"]  # byte for byte
    stored = Snapshot.from_json(final.to_json())
    assert json.loads(final.to_json())["context"] == json.loads(KEY_ORDER["contextJson"])
    assert list(json.loads(final.to_json())["context"]) == expected
    assert list(stored.context) == expected


async def test_a_decoded_context_keeps_javascript_order_as_it_grows() -> None:
    # Written in hash order by an earlier version: read as JSON.parse would order it.
    text = json.dumps(
        {
            "workflowId": "w",
            "status": "active",
            "currentNodeId": None,
            "context": {k: [{"output": k, "timestamp": 1}] for k in ["b", "10", "a", "2"]},
            "version": 0,
            "metadata": {},
        }
    )
    decoded = Snapshot.from_json(text)
    assert list(decoded.context) == ["2", "10", "b", "a"]
    # Its bytes are carried as they are; every reader still orders them as JSON.parse does.
    assert list(Snapshot.from_json(decoded.to_json()).context) == ["2", "10", "b", "a"]
    grown = decoded.context.appended("n", NodeResult(1, 2)).appended("0", NodeResult(1, 2))
    assert list(grown) == ["0", "2", "10", "b", "a", "n"]
    regrown = decoded.model_copy(update={"context": grown})
    assert list(json.loads(regrown.to_json())["context"]) == list(grown)
    model = Snapshot.model_validate_json(text)
    assert list(model.context.appended("0", NodeResult(1, 2))) == ["0", "2", "10", "b", "a"]


async def test_expressions_see_nodes_in_typescript_order() -> None:
    workflow = {
        **KEY_ORDER["workflow"],
        "nodes": [
            *KEY_ORDER["workflow"]["nodes"],
            {"id": "list", "type": "keys", "data": {"keys": "{{ nodes }}"}},
        ],
        "edges": [*KEY_ORDER["workflow"]["edges"], {"source": "n1", "target": "list"}],
    }
    engine = WorkflowEngine(
        workflow,
        {
            "echo": NodeDefinition(echo),
            "keys": NodeDefinition(lambda data, *_: StepResult(list(data["keys"]))),
        },
        transform_engines=[JexlTransformEngine()],
    )
    final = await engine.execute(initial_node_id="b")
    assert final.context["list"][0].output == KEY_ORDER["objectKeys"]


def test_the_order_does_not_depend_on_the_hash_seed() -> None:
    script = (
        "import asyncio, json, sys\n"
        "from refluxo import StepResult, WorkflowEngine\n"
        "workflow = json.loads(sys.argv[1])\n"
        "step = {'executor': lambda data, *_: StepResult(data)}\n"
        "engine = WorkflowEngine(workflow, {'echo': step}, clock=lambda: 1)\n"
        "final = asyncio.run(engine.execute(initial_node_id='b'))\n"
        "print(list(final.context), final.to_json().decode(), final.model_dump_json())\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(KEY_ORDER["workflow"])],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().startswith(str(KEY_ORDER["objectKeys"]))


# --- B, E: retry times as TypeScript computes them ----------------------------------------

RETRY = load("retry_times.json")


@pytest.mark.parametrize("case", RETRY["cases"], ids=lambda case: str(case["retryPolicy"]))
async def test_retry_times_are_typescripts(case: dict[str, Any]) -> None:
    engine = WorkflowEngine(
        {"nodes": [{"id": "charge", "type": "pay", "data": {"failUntil": 9, "amount": 1}}]},
        {"pay": NodeDefinition(pay, retry_policy=RetryPolicy.model_validate(case["retryPolicy"]))},
        clock=lambda: CLOCK,
    )
    snapshot = await engine.execute(initial_node_id="charge", workflow_id="r")
    times = []
    while snapshot.status == "error":
        assert snapshot.retry_state is not None
        times.append(snapshot.retry_state.next_retry_at)
        snapshot = await engine.execute(snapshot=snapshot)
    assert times == case["nextRetryAts"]
    assert snapshot.status == case["status"]
    assert [result.attempt for result in snapshot.context["charge"]] == case["attempts"]


def test_a_fractional_retry_time_loads_and_is_written_back_as_is() -> None:
    text = RETRY["errorSnapshot"]  # nextRetryAt 1700000000001.5
    for snapshot in (Snapshot.model_validate_json(text), Snapshot.from_json(text)):
        assert snapshot.retry_state is not None
        assert snapshot.retry_state.next_retry_at == CLOCK + 1.5
        assert wire(snapshot) == json.loads(text)


async def test_an_integral_retry_time_is_written_as_an_integer() -> None:
    policy = RetryPolicy(max_attempts=1, interval=2.0)
    engine = WorkflowEngine(
        {"nodes": [{"id": "charge", "type": "pay", "data": {"failUntil": 9, "amount": 1}}]},
        {"pay": NodeDefinition(pay, retry_policy=policy)},
        clock=lambda: CLOCK,
    )
    snapshot = await engine.execute(initial_node_id="charge")
    assert b'"nextRetryAt":1700000000002}' in snapshot.to_json()


# --- C: a missing value is left out, not written as null ----------------------------------

ABSENT_VALUES = load("absent_values.json")


async def test_missing_outputs_are_left_out_as_typescript_leaves_them_out() -> None:
    engine = WorkflowEngine(
        ABSENT_VALUES["workflow"],
        {
            "noop": NodeDefinition(noop),
            "nul": NodeDefinition(lambda *_: {"data": None}),
            "obj": NodeDefinition(lambda *_: StepResult({"z": 3})),
            "boom": NodeDefinition(lambda *_: (_ for _ in ()).throw(Error("no"))),
        },
        clock=lambda: CLOCK,
    )
    final = await engine.execute(initial_node_id="nothing", workflow_id="absent")
    theirs = json.loads(ABSENT_VALUES["snapshotJson"])
    ours = wire(final)
    assert ours["context"] == theirs["context"]
    assert final.context["nothing"][0].output is None  # Python still reads None
    assert not final.context["nothing"][0].has_output
    assert final.context["nul"][0].has_output
    # Stored before this: written with nulls, still loads, and keeps its nulls.
    old = {"output": None, "timestamp": 1, "attempt": 1}
    assert NodeResult.model_validate(old).model_dump(mode="json") == old


def test_step_result_without_data_is_typescripts_empty_object() -> None:
    assert NodeResult(timestamp=1).model_dump(mode="json") == {"timestamp": 1, "attempt": 1}
    assert NodeResult(None, 1).model_dump(mode="json") == {
        "output": None,
        "timestamp": 1,
        "attempt": 1,
    }


# --- D: what executors may return (kept stricter: README) ---------------------------------

RETURNS = {case["name"]: case for case in load("executor_returns.json")["cases"]}


@pytest.mark.parametrize("name", list(RETURNS))
async def test_odd_executor_returns_end_as_the_readme_says(name: str) -> None:
    case = RETURNS[name]
    engine = WorkflowEngine(
        {
            "nodes": [{"id": "odd", "type": "odd"}, {"id": "next", "type": "echo"}],
            "edges": [{"id": "e1", "source": "odd", "target": "next"}],
        },
        {"odd": NodeDefinition(lambda *_: case["returns"]), "echo": NodeDefinition(echo)},
        clock=lambda: CLOCK,
    )
    final = await engine.execute(initial_node_id="odd", workflow_id="d")
    theirs = case["end"]
    (result,) = final.context["odd"]
    assert final.status == "failed"
    assert result.error is not None
    if name == "null":  # both fail the node, in their own words
        assert theirs["status"] == "failed"
        assert result.error.startswith("TypeError: an executor must return")
        return
    # TypeScript records no output (or ignores the handle) and goes on; refluxo refuses.
    assert theirs["status"] == "completed"
    assert "@refluxo/core would" in result.error
    assert "refluxo refuses it" in result.error


# --- E: any backoff string ----------------------------------------------------------------


async def test_a_typescript_workflow_with_an_unknown_backoff_continues_here() -> None:
    snapshot = Snapshot.model_validate_json(RETRY["errorSnapshot"])
    linear = RetryPolicy.model_validate({"maxAttempts": 3, "interval": 100, "backoff": "linear"})
    engine = WorkflowEngine(
        {"nodes": [{"id": "charge", "type": "pay", "data": {"failUntil": 2, "amount": 1}}]},
        {"pay": NodeDefinition(pay, retry_policy=linear)},
        clock=lambda: CLOCK,
    )
    again = await engine.execute(snapshot=snapshot)
    assert again.retry_state is not None
    assert again.retry_state.next_retry_at == CLOCK + 100  # fixed, as in TypeScript
    assert (await engine.execute(snapshot=again)).status == "completed"


# --- F: "sourceHandle": null is never taken -----------------------------------------------

NULL_HANDLE = load("null_source_handle.json")["cases"]


@pytest.mark.parametrize("case", NULL_HANDLE, ids=lambda case: case["name"])
async def test_a_null_source_handle_is_not_no_handle(case: dict[str, Any]) -> None:
    engine = WorkflowEngine(case["workflow"], {"echo": NodeDefinition(echo)}, clock=lambda: CLOCK)
    final = await engine.execute(initial_node_id="a", workflow_id="f")
    _ours = wire(final)
    assert {k: v for k, v in _ours.items() if k != "version"} == {
        k: v for k, v in case["end"].items() if k != "version"
    }
    workflow = WorkflowDefinition.model_validate(case["workflow"])
    assert json.loads(workflow.model_dump_json()) == case["workflow"]  # the null is kept
    warnings = [p.message for p in check_graph(workflow) if "sourceHandle is null" in p.message]
    assert len(warnings) == 1


# --- G: the engine's own error texts ------------------------------------------------------

ERRORS = load("engine_errors.json")["errors"]


async def test_engine_errors_start_with_typescripts_words() -> None:
    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "ghost"}], "edges": [{"source": "a", "target": "gone"}]},
        {},
    )
    with pytest.raises(WorkflowDefinitionError) as unknown_node:
        await engine.execute(initial_node_id="nowhere")
    with pytest.raises(WorkflowDefinitionError) as unknown_type:
        await engine.execute(initial_node_id="a")
    with pytest.raises(WorkflowDefinitionError) as invalid:
        engine.validate_workflow()
    # TypeScript's text (after "Error: "), then which node or type.
    assert str(unknown_node.value).startswith(ERRORS["unknownNode"].removeprefix("Error: "))
    assert str(unknown_type.value).startswith(ERRORS["unknownType"].removeprefix("Error: "))
    assert ERRORS["validateWorkflow"].removeprefix("Error: ") in str(invalid.value)


async def test_input_validation_errors_read_as_typescripts() -> None:
    class Refuse(Validator):
        def validate(self, data: Any, schema: Any) -> ValidationResult:
            return ValidationResult(
                False, errors=[{"path": "amount", "message": "Expected number"}]
            )

    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "t"}]},
        {"t": NodeDefinition(echo, metadata={"input": {}})},
        validator=Refuse(),
    )
    final = await engine.execute(initial_node_id="a")
    expected = ERRORS["validation"].removeprefix("Error: ")
    assert final.context["a"][0].error == f"NodeValidationError: {expected}"
