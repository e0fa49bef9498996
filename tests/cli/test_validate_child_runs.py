"""``refluxo validate`` and registration catch a ``map``, ``parallel`` or ``call`` node that
would fail in every run reaching it: a workflow name the app does not have, a bad
``concurrency`` or ``failure``, ``items`` or ``branches`` of the wrong shape.

The app is the examples' (the default ``--app``), whose ``enrich-records`` workflow maps
over records with the registered workflow ``enrich-record``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refluxo import StepResult
from refluxo.errors import WorkflowDefinitionError
from refluxo.host.cli import main
from refluxo.runtime import App
from refluxo.runtime.errors import UnknownWorkflow

ROOT = Path(__file__).resolve().parents[2]
ENRICH = json.loads((ROOT / "refluxo" / "examples" / "enrich_records.json").read_text())


def with_map_data(tmp_path: Path, **changes: Any) -> Path:
    workflow = json.loads(json.dumps(ENRICH))
    data = next(n for n in workflow["nodes"] if n["id"] == "enrich")["data"]
    data.update(changes)
    file = tmp_path / "workflow.json"
    file.write_text(json.dumps(workflow, indent=2))
    return file


def test_the_example_map_is_valid(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["validate", str(with_map_data(tmp_path))])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(": ok")


def test_a_misspelled_workflow_name_is_an_error_with_the_nearest_name(
    cli: CliRunner, tmp_path: Path
) -> None:
    file = with_map_data(tmp_path, workflow="enrich-recrd")
    result = cli.invoke(main, ["validate", "--json", str(file)])
    assert result.exit_code == 1
    (problem,) = json.loads(result.output)["problems"]
    assert problem["node"] == "enrich"
    assert problem["value"] == "enrich-recrd"
    assert problem["suggestion"] == "enrich-record"
    assert "names no registered workflow" in problem["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number from 1 to 1000, got 0"),
        ({"concurrency": "3"}, "concurrency must be a whole number from 1 to 1000, got '3'"),
        ({"failure": "ignore"}, "failure must be 'fail_fast' or 'collect', got 'ignore'"),
        ({"items": {"a": 1}}, "needs 'items' as a list, got dict"),
    ],
    ids=["concurrency-0", "concurrency-string", "failure", "items-object"],
)
def test_bad_literal_data_is_an_error(
    cli: CliRunner, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    result = cli.invoke(main, ["validate", str(with_map_data(tmp_path, **change))])
    assert result.exit_code == 1
    assert f"map node 'enrich': {message}" in result.output


def test_a_key_the_node_does_not_read_is_a_warning(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(main, ["validate", str(with_map_data(tmp_path, concurency=5))])
    assert result.exit_code == 0
    assert "warning: map node 'enrich': 'concurency' is not read" in result.output


def quick_app() -> App:
    app = App()

    @app.node()
    def quick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"ok": True})

    return app


def flow(node_type: str, data: Any) -> dict[str, Any]:
    return {
        "nodes": [{"id": "start", "type": "trigger"}, {"id": "n", "type": node_type, "data": data}],
        "edges": [{"source": "start", "target": "n"}],
    }


@pytest.mark.parametrize(
    ("node_type", "data", "message"),
    [
        ("parallel", {"branches": {}}, "needs 'branches'"),
        ("parallel", {"branches": {str(i): "x" for i in range(101)}}, "the limit is 100"),
        ("map", {"items": [1], "workflow": "x", "concurrency": 1001}, "from 1 to 1000"),
        ("map", {"workflow": "x"}, "needs 'items'"),
    ],
    ids=["no-branches", "101-branches", "concurrency", "no-items"],
)
def test_registration_refuses_data_that_fails_every_run(
    node_type: str, data: Any, message: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        quick_app().workflow("bad", flow(node_type, data))


def test_registration_accepts_a_workflow_registered_later_and_expressions() -> None:
    app = quick_app()
    data = {"items": "{{ nodes.start.output }}", "workflow": "later", "concurrency": "{{ 3 }}"}
    app.workflow("first", flow("map", data))  # "later" is not registered yet
    app.workflow("later", flow("quick", None))


@pytest.mark.parametrize("name", ["", "   "])
def test_a_workflow_needs_a_name(name: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match="a workflow needs a name"):
        quick_app().workflow(name, flow("quick", None))


def test_an_unknown_workflow_names_the_nearest_and_a_bounded_list() -> None:
    app = quick_app()
    for index in range(30):
        app.workflow(f"flow-{index:02d}", flow("quick", None))
    with pytest.raises(UnknownWorkflow) as raised:
        app.get_workflow("flow-1")
    message = str(raised.value)
    assert "did you mean 'flow-" in message
    assert message.endswith("and 10 more)")
    assert message.count("flow-") == 1 + 1 + 20  # asked, suggested, listed
