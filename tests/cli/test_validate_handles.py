"""``refluxo validate`` catches a mistyped branch, node type or node reference.

The app is the examples' (the default ``--app``), whose ``approval`` node type declares the
handles ``approved`` and ``rejected``: the content-approval workflow, with one word
changed, is the workflow that would otherwise end ``completed`` without publishing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from refluxo.host.cli import main

ROOT = Path(__file__).resolve().parents[2]
APPROVAL = json.loads((ROOT / "refluxo" / "examples" / "content_approval.json").read_text())


def changed(tmp_path: Path, change: Any) -> Path:
    """The content-approval workflow, changed by ``change(workflow)``, in a file."""
    workflow = json.loads(json.dumps(APPROVAL))
    change(workflow)
    file = tmp_path / "workflow.json"
    file.write_text(json.dumps(workflow, indent=2))
    return file


def line_of(file: Path, object_id: str) -> int:
    """The line on which the node or edge with ``object_id`` opens (its ``{``)."""
    lines = file.read_text().splitlines()
    return next(n for n, line in enumerate(lines) if f'"id": "{object_id}"' in line)


def node(workflow: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


def mistype_handle(workflow: dict[str, Any]) -> None:
    workflow["edges"][2]["sourceHandle"] = "aproved"


def test_a_mistyped_source_handle_is_an_error_with_the_nearest_handle(
    cli: CliRunner, tmp_path: Path
) -> None:
    file = changed(tmp_path, mistype_handle)
    result = cli.invoke(main, ["validate", str(file)])
    assert result.exit_code == 1
    assert (
        f"{file}:{line_of(file, 'e2')}: error: edge 'e2' (review -> publish): node 'review' "
        "(type 'approval') never returns handle 'aproved'; its handles are 'approved', "
        "'rejected'; did you mean 'approved'?"
    ) in result.output
    assert "ok" not in result.output


def test_an_edge_without_a_source_handle_is_the_default_edge(
    cli: CliRunner, tmp_path: Path
) -> None:
    file = changed(tmp_path, lambda workflow: workflow["edges"][2].pop("sourceHandle"))
    result = cli.invoke(main, ["validate", str(file)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("ok")


def test_without_app_option_the_default_app_checks_node_types(
    cli: CliRunner, tmp_path: Path
) -> None:
    file = changed(tmp_path, lambda workflow: node(workflow, "publish").update(type="notfy"))
    result = cli.invoke(main, ["validate", str(file)])
    assert result.exit_code == 1
    assert (
        "error: Node definition not found for type: notfy (node 'publish'); did you mean 'notify'?"
    ) in result.output


def test_a_misspelled_node_in_an_expression_is_an_error(cli: CliRunner, tmp_path: Path) -> None:
    def misspell(workflow: dict[str, Any]) -> None:
        node(workflow, "draft")["data"]["title"] = "{{ nodes.strat.output.title }}"

    file = changed(tmp_path, misspell)
    result = cli.invoke(main, ["validate", str(file), "--app", "refluxo.examples.app:app"])
    assert result.exit_code == 1
    assert (
        f"{file}:{line_of(file, 'draft')}: error: node 'draft' data.title: reads nodes.strat, "
        "but the workflow has no node 'strat'; did you mean 'start'?"
    ) in result.output


def test_a_computed_node_reference_is_not_guessed(cli: CliRunner, tmp_path: Path) -> None:
    def compute(workflow: dict[str, Any]) -> None:
        node(workflow, "draft")["data"]["title"] = "{{ nodes[input.source].output.title }}"

    result = cli.invoke(main, ["validate", str(changed(tmp_path, compute))])
    assert result.exit_code == 0, result.output


def test_no_app_checks_the_file_alone(cli: CliRunner, tmp_path: Path) -> None:
    def break_all(workflow: dict[str, Any]) -> None:
        mistype_handle(workflow)
        node(workflow, "publish")["type"] = "notfy"
        node(workflow, "draft")["data"]["title"] = "{{ nodes.strat.output.title }}"

    result = cli.invoke(main, ["validate", str(changed(tmp_path, break_all)), "--no-app"])
    assert result.exit_code == 1
    assert "no node 'strat'" in result.output  # references need no app
    assert "notfy" not in result.output
    assert "aproved" not in result.output


def test_json_output_names_node_edge_value_and_suggestion(cli: CliRunner, tmp_path: Path) -> None:
    def break_two(workflow: dict[str, Any]) -> None:
        mistype_handle(workflow)
        node(workflow, "draft")["data"]["title"] = "{{ nodes.strat.output.title }}"

    file = changed(tmp_path, break_two)
    result = cli.invoke(main, ["validate", str(file), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["file"] == str(file)
    assert report["ok"] is False
    reference, handle = report["problems"]
    assert handle == {
        "line": line_of(file, "e2"),
        "severity": "error",
        "message": handle["message"],
        "edge": "e2",
        "value": "aproved",
        "suggestion": "approved",
    }
    assert reference["node"] == "draft"
    assert (reference["value"], reference["suggestion"]) == ("strat", "start")


def test_json_output_of_a_valid_workflow(cli: CliRunner) -> None:
    file = ROOT / "refluxo" / "examples" / "content_approval.json"
    result = cli.invoke(main, ["validate", str(file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"file": str(file), "ok": True, "problems": []}


def test_an_app_that_cannot_be_imported_points_at_no_app(cli: CliRunner, tmp_path: Path) -> None:
    file = changed(tmp_path, mistype_handle)
    result = cli.invoke(main, ["validate", str(file), "--app", "no_such_module:app"])
    assert result.exit_code == 2
    assert "cannot import the app module 'no_such_module'" in result.output
    assert "--no-app checks the file without node types and handles" in result.output
