"""A node type's declared handles (``NodeDefinition`` metadata ``"handles"``) hold at run
time in the engine itself, not only in the durable runtime's App: an executor returning a
handle its type does not declare fails its node, naming the handle and the choices."""

from __future__ import annotations

from typing import Any

import pytest

from refluxo import NodeDefinition, StepResult, WorkflowEngine

WORKFLOW = {
    "nodes": [{"id": "a", "type": "decide"}, {"id": "b", "type": "sink"}],
    "edges": [{"source": "a", "target": "b", "sourceHandle": "yes"}],
}


def sink(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult("sunk")


def engine_returning(handle: Any, handles: list[str]) -> WorkflowEngine:
    def decide(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"x": 1}, next_handle=handle)

    workflow: dict[str, Any] = {**WORKFLOW, "edges": WORKFLOW["edges"] if handles else []}
    return WorkflowEngine(
        workflow,
        {
            "decide": NodeDefinition(decide, metadata={"handles": handles}),
            "sink": NodeDefinition(sink),
        },
    )


@pytest.mark.parametrize(
    ("handle", "handles", "words"),
    [
        (
            "yse",
            ["yes", "no"],
            "returned handle 'yse', which it does not declare; its handles "
            "are 'yes', 'no'; did you mean 'yes'?",
        ),
        (
            "surprise",
            [],
            "returned handle 'surprise', which it does not declare; its handles are none",
        ),
    ],
    ids=["typo", "declares-none"],
)
async def test_an_undeclared_handle_fails_the_node(
    handle: str, handles: list[str], words: str
) -> None:
    final = await engine_returning(handle, handles).execute(initial_node_id="a")
    assert final.status == "failed"
    assert "UndeclaredHandle: node type 'decide' " + words in final.metadata["failedReason"]


async def test_a_declared_handle_and_no_handle_both_go_on() -> None:
    taken = await engine_returning("yes", ["yes", "no"]).execute(initial_node_id="a")
    assert taken.status == "completed"
    assert taken.context["b"][0].output == "sunk"
    plain = await engine_returning(None, []).execute(initial_node_id="a")
    assert plain.status == "completed"
    assert "b" not in plain.context
