"""``undefined`` ends as in Refluxo's TypeScript engine, recorded from real Jexl, or differs
where the README's differences table says so.

``tests/data/ts_expressions/undefined_outcomes.json`` holds, for each case, what Refluxo's
transform engine (Jexl 2.3.0 on Node.js 20) made of node data: ``executor``, the value the
executor received (``{"$u": 1}`` for ``undefined``, ``{"$n": "NaN"}`` for a number JSON
cannot hold), and ``wire``, its ``JSON.stringify`` form, which a stored output holds. It was
recorded as ``README.md`` of that directory describes. refluxo's result must have exactly
that wire form; a case with a ``refluxo`` outcome is a deliberate difference, named by a row
of the README's table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from refluxo import MemoryContext, NodeDefinition, NodeResult, StepResult, WorkflowEngine
from refluxo.expressions import JexlTransformEngine
from refluxo.model import Snapshot

ROOT = Path(__file__).resolve().parents[2]
DATA: dict[str, Any] = json.loads(
    (ROOT / "tests" / "data" / "ts_expressions" / "undefined_outcomes.json").read_text("utf-8")
)
CASES = {case["id"]: case for case in DATA["cases"]}
UNDEFINED_MARK = {"$u": 1}


def context() -> MemoryContext:
    return MemoryContext.from_mapping(
        {
            node: [NodeResult.model_validate(result) for result in results]
            for node, results in DATA["context"].items()
        }
    )


def transformed(case: dict[str, Any]) -> Any:
    globals = None if case.get("globals") == "absent" else DATA["globals"]
    return JexlTransformEngine().transform(case["data"], context(), globals)


def wire(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def differences_table() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    start = text.index("## Differences from `@refluxo/core`")
    return text[start : text.index("\n## ", start + 1)]


def executor_view(typescript: Any) -> Any:
    """What a Python executor gets for what TypeScript's executor got: keys holding
    ``undefined`` left out, ``undefined`` in a list and numbers JSON cannot hold ``None``."""
    if typescript == UNDEFINED_MARK or (isinstance(typescript, dict) and "$n" in typescript):
        return None
    if isinstance(typescript, list):
        return [executor_view(item) for item in typescript]
    if isinstance(typescript, dict):
        return {
            key: executor_view(value)
            for key, value in typescript.items()
            if value != UNDEFINED_MARK
        }
    return typescript


def test_the_outcomes_were_recorded_with_jexl_2() -> None:
    assert DATA["jexl"].startswith("2.")
    assert len(CASES) == len(DATA["cases"])


@pytest.mark.parametrize("case_id", list(CASES))
def test_undefined_ends_as_in_typescript_or_as_documented(case_id: str) -> None:
    case = CASES[case_id]
    typescript = case["typescript"]
    mine = transformed(case)
    if "refluxo" not in case:
        assert wire(mine) == typescript["wire"]
        assert mine == executor_view(typescript["executor"])
        return
    assert wire(mine) == case["refluxo"]["wire"] != typescript["wire"]
    assert "`{a: nope}`" in differences_table()


def test_a_missing_output_and_a_null_output_differ() -> None:
    assert CASES["concat-missing-output"]["typescript"]["wire"] == {"v": "xundefined"}
    assert CASES["concat-null-output"]["typescript"]["wire"] == {"v": "xnull"}
    assert CASES["add-missing-output"]["typescript"]["executor"] == {"v": {"$n": "NaN"}}
    assert transformed(CASES["add-missing-output"]) == {"v": None}  # NaN: null on the wire
    assert transformed(CASES["add-null-output"]) == {"v": 1}
    assert transformed(CASES["last-without-output"]) == {"v": {"timestamp": 5}}


async def test_an_undefined_value_is_left_out_of_the_stored_output() -> None:
    workflow = {
        "nodes": [
            {"id": "c", "type": "nothing", "data": {}},
            {"id": "n", "type": "echo", "data": CASES["undefined-value-left-out"]["data"]},
            {"id": "m", "type": "echo", "data": {"last": "{{ nodes.c.last }}"}},
        ],
        "edges": [
            {"id": "e1", "source": "c", "target": "n"},
            {"id": "e2", "source": "n", "target": "m"},
        ],
    }

    def nothing(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult()

    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        assert "val" not in data
        return StepResult(dict(data))

    engine = WorkflowEngine(
        workflow,
        {"nothing": NodeDefinition(executor=nothing), "echo": NodeDefinition(executor=echo)},
        transform_engines=[JexlTransformEngine()],
        clock=lambda: 7,
    )
    snapshot = await engine.execute(initial_node_id="c")
    stored = json.loads(Snapshot.from_json(snapshot.to_json()).to_json())["context"]
    assert stored["c"] == [{"timestamp": 7, "attempt": 1}]  # no output, no error
    assert stored["n"][0]["output"] == CASES["undefined-value-left-out"]["typescript"]["wire"]
    assert stored["m"][0]["output"] == {"last": {"timestamp": 7}}


def test_undefined_is_left_out_at_any_depth_and_kept_as_a_slot_in_lists() -> None:
    class Text(str):
        pass

    data = {"a": Text("{{ nope }}"), "b": [Text("{{ nope }}"), "{{ 1 }}"], "c": {"d": "{{ x }}"}}
    engine = JexlTransformEngine()
    assert engine.transform(data, MemoryContext()) == {"b": [None, 1], "c": {}}
    assert engine.transform("{{ nope }}", MemoryContext()) is None
    assert engine.transform({"n": "{{ input.m }}"}, MemoryContext()) == {}
    assert engine.transform({"n": "{{ globals.n }}"}, MemoryContext(), {"n": None}) == {"n": None}
