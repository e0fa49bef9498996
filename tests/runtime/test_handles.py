"""Declared handles: a branch cannot be mistyped on an edge or in an executor.

A node type declaring its handles (``@app.node(handles=[...])`` or
``metadata["handles"]``) has workflows with any other ``sourceHandle`` refused at
registration, and returning any other handle is a node error. A type declaring none
accepts any handle, as in ``@refluxo/core``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo import NodeDefinition, StepResult, WorkflowEngine
from refluxo.errors import WorkflowDefinitionError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.references import node_references
from refluxo.runtime import App
from refluxo.runtime.ports import RunRecord
from tests.support.stores import assert_history_consistent


def order(handle: str = "approved", *, typo_in: str = "") -> dict[str, Any]:
    """An order: review, then charge on ``handle``, refund otherwise."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger"},
            {"id": "review", "type": "approval"},
            {"id": "charge", "type": "record", "data": {"what": f"{{{{ nodes.{typo_in}start }}}}"}},
            {"id": "refund", "type": "record"},
        ],
        "edges": [
            {"source": "start", "target": "review"},
            {"id": "yes", "source": "review", "target": "charge", "sourceHandle": handle},
            {"id": "no", "source": "review", "target": "refund", "sourceHandle": "rejected"},
        ],
    }


def order_app(returned: str | None = "approved", *, declared: bool = True) -> App:
    app = App()
    handles = ["approved", "rejected"] if declared else None

    @app.node(handles=handles)
    def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"decision": returned}, next_handle=returned)

    @app.node()
    def record(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    return app


@pytest.fixture
def run_to_end(tmp_path: Path) -> Iterator[Any]:
    """Start workflow ``name`` of an app on the embedded runtime, deliver every step, and
    return the run's record and the nodes it ran, in order."""
    made: list[EmbeddedRuntime] = []

    def run(app: App, name: str) -> tuple[RunRecord, list[str]]:
        runtime = EmbeddedRuntime(app, tmp_path / f"{len(made)}.db", workers=0).start()
        made.append(runtime)
        run_id = runtime.service.start(name).record.run_id
        runtime.scheduler.drain()
        return runtime.service.get(run_id), assert_history_consistent(runtime.store, run_id)

    yield run
    for runtime in made:
        runtime.stop()


# -- registration ------------------------------------------------------------------------------


def test_a_mistyped_source_handle_is_refused_naming_edge_value_and_choices() -> None:
    with pytest.raises(WorkflowDefinitionError) as refused:
        order_app().workflow("order", order("aproved"))
    message = str(refused.value)
    assert "edge 'yes' (review -> charge)" in message
    assert "node 'review' (type 'approval') never returns handle 'aproved'" in message
    assert "its handles are 'approved', 'rejected'; did you mean 'approved'?" in message


def test_a_type_declaring_no_handles_accepts_any_source_handle() -> None:
    spec = order_app(declared=False).workflow("order", order("aproved"))
    assert spec.definition.edges[1].source_handle == "aproved"


def test_a_declared_handle_and_the_default_edge_are_accepted() -> None:
    app = order_app()
    app.workflow("order", order())
    default = order()
    del default["edges"][1]["sourceHandle"]
    app.workflow("default-edge", default)


def test_a_misspelled_node_in_an_expression_is_refused_at_registration() -> None:
    with pytest.raises(WorkflowDefinitionError, match="did you mean 'start'"):
        order_app().workflow("order", order(typo_in="s"))  # nodes.sstart


def test_handles_can_be_declared_in_the_definition_metadata() -> None:
    def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(None, next_handle="aproved")

    definition = NodeDefinition(approval, metadata={"handles": ["approved", "rejected"]})
    assert definition.handles == ("approved", "rejected")
    assert NodeDefinition(approval).handles is None
    assert NodeDefinition(approval, metadata={"input": {}}).handles is None
    app = order_app()
    app.add_node_type("approval", definition)
    with pytest.raises(WorkflowDefinitionError, match="never returns handle 'aproved'"):
        app.workflow("order", order("aproved"))


def test_a_bare_engine_checks_declared_handles_too() -> None:
    app = order_app()
    with pytest.raises(WorkflowDefinitionError, match="never returns handle 'aproved'"):
        WorkflowEngine(order("aproved"), app.node_types).validate_workflow()


@pytest.mark.parametrize(
    ("metadata", "handles", "complaint"),
    [
        (None, "approved", "list of strings"),
        ({"handles": "approved"}, None, "list of strings"),
        ({"handles": ["approved", 3]}, None, "non-empty strings"),
        ("schema", ["approved"], "metadata to be a dict"),
    ],
)
def test_a_malformed_declaration_fails_at_registration(
    metadata: Any, handles: Any, complaint: str
) -> None:
    app = App()
    with pytest.raises(WorkflowDefinitionError, match=complaint):

        @app.node(metadata=metadata, handles=handles)
        def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
            return StepResult(None)


def test_handles_merge_into_the_given_metadata() -> None:
    app = App()

    @app.node(metadata={"input": {"type": "object"}}, handles=["yes", "no"])
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(None)

    assert app.node_types["ask"].metadata == {"input": {"type": "object"}, "handles": ["yes", "no"]}


# -- run time ----------------------------------------------------------------------------------


def test_a_declared_handle_returned_at_run_time_takes_its_branch(run_to_end: Any) -> None:
    app = order_app("approved")
    app.workflow("order", order())
    record, ran = run_to_end(app, "order")
    assert record.status == "completed"
    assert ran == ["start", "review", "charge"]


def test_an_undeclared_handle_returned_at_run_time_fails_the_node(run_to_end: Any) -> None:
    app = order_app("aproved")
    app.workflow("order", order())
    record, ran = run_to_end(app, "order")
    assert record.status == "failed"
    reason = record.snapshot.metadata["failedReason"]
    assert "UndeclaredHandle" in reason
    assert "node type 'approval' returned handle 'aproved', which it does not declare" in reason
    assert "its handles are 'approved', 'rejected'; did you mean 'approved'?" in reason
    assert ran == ["start", "review"]


def test_an_async_executor_is_checked_and_stays_async(run_to_end: Any) -> None:
    app = order_app()

    @app.node(handles=["approved", "rejected"])
    async def approval(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
        return {"data": None, "nextHandle": "maybe"}

    assert inspect.iscoroutinefunction(app.node_types["approval"].executor)
    app.workflow("order", order())
    record, _ = run_to_end(app, "order")
    assert record.status == "failed"
    assert "returned handle 'maybe'" in record.snapshot.metadata["failedReason"]


def test_a_sync_executor_stays_sync_and_may_return_no_handle(run_to_end: Any) -> None:
    app = order_app(None)
    assert not inspect.iscoroutinefunction(app.node_types["approval"].executor)
    assert app.node_types["approval"].executor.__name__ == "approval"
    workflow = order()
    workflow["edges"].append({"source": "review", "target": "refund"})  # the default edge
    app.workflow("order", workflow)
    record, ran = run_to_end(app, "order")
    assert record.status == "completed"
    assert ran == ["start", "review", "refund"]


def test_an_undeclared_type_returns_any_handle_as_before(run_to_end: Any) -> None:
    app = order_app("aproved", declared=False)
    app.workflow("order", order())
    record, ran = run_to_end(app, "order")
    assert record.status == "completed"  # no edge matched: what a declaration prevents
    assert ran == ["start", "review"]


# -- node references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("{{ nodes.start.output }}", ["start"]),
        (
            "a {{ nodes['my node'].output }} b {{ nodes.x.last.data + nodes.y.output }}",
            ["my node", "x", "y"],
        ),
        ('{{ nodes["a\\"b"].output }}', ['a"b']),
        ("{{ nodes[input.step].output }}", []),  # computed: cannot be resolved statically
        ("{{ input.nodes.start }}", []),  # not the nodes variable
        ("{{ nodes.start + }}", []),  # a syntax error, reported on its own
        ("no template", []),
    ],
)
def test_node_references_are_read_from_the_expression_tree(text: str, ids: list[str]) -> None:
    assert [reference.node_id for reference in node_references(text)] == ids
