"""Templates end as in Refluxo's TypeScript engine, recorded from real Jexl, or differ where
the README's differences table says so.

``tests/data/ts_expressions/typescript.json`` holds what Refluxo's transform engine (Jexl
2.3.0 on Node.js) made of each case of ``cases.json``: a value, or the error it threw
(see that directory's README). A case with a ``refluxo`` outcome is a deliberate
difference: refluxo's outcome is written there, must differ from TypeScript's, and must be
named by a row of the README's table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from refluxo import (
    Context,
    MemoryContext,
    NodeDefinition,
    NodeResult,
    SnapshotStatus,
    WorkflowEngine,
)
from refluxo.errors import ExpressionError
from refluxo.expressions import JexlTransformEngine
from refluxo.transform import TransformEngine

DATA = Path(__file__).resolve().parents[1] / "data" / "ts_expressions"
README = Path(__file__).resolve().parents[2] / "README.md"
CASES: dict[str, Any] = json.loads((DATA / "cases.json").read_text("utf-8"))
TYPESCRIPT: dict[str, Any] = json.loads((DATA / "typescript.json").read_text("utf-8"))
BY_ID = {case["id"]: case for case in CASES["cases"]}


def context() -> MemoryContext:
    return MemoryContext.from_mapping(
        {
            node: [NodeResult.model_validate(result) for result in results]
            for node, results in CASES["context"].items()
        }
    )


def node_data(case: dict[str, Any]) -> dict[str, Any]:
    return {**CASES["input"], **case.get("input", {}), "val": case["template"]}


def outcome(case: dict[str, Any]) -> dict[str, Any]:
    """What refluxo makes of a case, in the recorded form: its value, or its error."""
    engine = JexlTransformEngine()
    try:
        result = engine.transform(node_data(case), context(), case.get("globals"))
    except ExpressionError as error:
        return {"error": str(error)}
    return {"value": result.get("val")}  # undefined is left out; recorded as null


def differences_table() -> str:
    text = README.read_text("utf-8")
    start = text.index("## Differences from `@refluxo/core`")
    return text[start : text.index("\n## ", start + 1)]


def test_every_case_has_a_recorded_typescript_outcome() -> None:
    assert TYPESCRIPT["jexl"].startswith("2.")
    assert set(TYPESCRIPT["outcomes"]) == set(BY_ID)


@pytest.mark.parametrize("case_id", [case["id"] for case in CASES["cases"]])
def test_a_template_ends_as_in_typescript_or_as_documented(case_id: str) -> None:
    case = BY_ID[case_id]
    typescript = TYPESCRIPT["outcomes"][case_id]
    mine = outcome(case)
    if "refluxo" not in case:
        assert mine == typescript
        return
    assert mine == case["refluxo"]
    assert mine != typescript
    rows = [line for line in differences_table().splitlines() if line.startswith("| ")]
    assert any(row.startswith(f"| {case['difference']} |") for row in rows), case["difference"]


def echo(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {"data": data}


@pytest.mark.parametrize(
    "case_id",
    ["bracket-number-on-undefined", "minus-on-a-path", "two-templates-fill-the-string"],
)
async def test_a_failing_template_fails_the_run_as_in_typescript(case_id: str) -> None:
    # In TypeScript the transform throws, the node fails with `String(error)`
    # ("Error: <message>") and, without a retry policy, the run ends `failed`.
    case = BY_ID[case_id]
    typescript_error = TYPESCRIPT["outcomes"][case_id]["error"]
    workflow = {
        "nodes": [
            {"id": "n0", "type": "emit", "data": {}},
            {"id": "n1", "type": "echo", "data": node_data(case)},
        ],
        "edges": [{"source": "n0", "target": "n1"}],
    }
    output = CASES["context"]["n0"][0]["output"]
    engine = WorkflowEngine(
        workflow,
        {
            "emit": NodeDefinition(executor=lambda *_: {"data": output}),
            "echo": NodeDefinition(executor=echo),
        },
        transform_engines=[JexlTransformEngine()],
    )
    snapshot = await engine.execute(initial_node_id="n0")
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.context["n1"][-1].error == f"ExpressionError: {typescript_error}"


def test_an_expression_error_reads_as_javascripts() -> None:
    # The reason after "]: " is JavaScript's String(error): its class, then its message.
    for recorded in TYPESCRIPT["outcomes"].values():
        if "error" in recorded:
            assert re.match(r"Jexl Error in \[.*\]: (Type)?Error: ", recorded["error"], re.S)


def test_globals_are_optional_as_in_typescript() -> None:
    data = {"value": "{{ globals }}", "text": "[{{ globals }}]"}
    # `globals` is undefined: its key is left out, as JSON.stringify leaves it out
    assert JexlTransformEngine().transform(data, MemoryContext()) == {"text": "[]"}
    assert TransformEngine().transform(data, MemoryContext()) is data


async def test_an_engine_declaring_globals_required_still_runs() -> None:
    class Stamp(TransformEngine):
        # Written before `globals` became optional: type checkers flag the narrower
        # signature, but the workflow engine always passes `globals`, so it runs.
        def transform(self, input: Any, context: Context, globals: Any) -> Any:  # type: ignore[override]
            return {**input, "stamped": globals}

    workflow = {"nodes": [{"id": "n1", "type": "echo", "data": {"a": 1}}], "edges": []}
    engine = WorkflowEngine(
        workflow, {"echo": NodeDefinition(executor=echo)}, transform_engines=[Stamp()]
    )
    snapshot = await engine.execute(initial_node_id="n1", globals={"key": 1})
    assert snapshot.status == SnapshotStatus.COMPLETED
    assert snapshot.context["n1"][-1].output == {"a": 1, "stamped": {"key": 1}}
