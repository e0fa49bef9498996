"""The command a person reads and a script drives: summaries, resume lines, exit codes.

Runs on an App of the test's own project, named once in its ``pyproject.toml``
(``[tool.refluxo] app``), as a user's project names it: a node that pauses for approval,
one that always fails, one whose retry is an hour away.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refluxo.host.cli import main
from refluxo.host.defaults import DEFAULT_APP

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
EPOCH_MS = re.compile(r"\b1\d{12}\b")

APP = textwrap.dedent(
    """
    from refluxo import RetryPolicy, StepResult
    from refluxo.runtime import App

    app = App()


    @app.node()
    def ask(data, context, payload, globals):
        if payload is None:
            return StepResult({"question": "Ship it?"}, pause=True)
        return StepResult(payload)


    @app.node()
    def boom(data, context, payload, globals):
        raise RuntimeError("the warehouse is on fire")


    @app.node(retry_policy=RetryPolicy(max_attempts=3, interval=3_600_000))
    def later(data, context, payload, globals):
        raise ConnectionError("carrier unreachable")


    def chain(*steps):
        nodes = [{"id": "start", "type": "trigger"}]
        nodes += [{"id": step, "type": kind} for step, kind in steps]
        ids = [node["id"] for node in nodes]
        edges = [{"source": a, "target": b} for a, b in zip(ids, ids[1:])]
        return {"start": "start", "nodes": nodes, "edges": edges}


    app.workflow("order", chain(("approve", "ask"), ("ship", "boom")))
    app.workflow("retry-later", chain(("send", "later")))
    app.workflow("approve-one", chain(("approve", "ask")))
    app.workflow(
        "approve-all",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {"id": "each", "type": "map", "data": {
                    "items": [{}, {}, {}, {}], "workflow": "approve-one", "concurrency": 2}},
            ],
            "edges": [{"source": "start", "target": "each"}],
        },
    )
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project: its App module and a pyproject.toml naming it; the command runs
    in a folder below it."""
    (tmp_path / "cli_shop_project").mkdir()
    (tmp_path / "cli_shop_project" / "__init__.py").write_text("")
    (tmp_path / "cli_shop_project" / "app.py").write_text(APP)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n[tool.refluxo]\napp = "cli_shop_project.app:app"\n'
    )
    below = tmp_path / "docs"
    below.mkdir()
    monkeypatch.chdir(below)
    for name in [n for n in sys.modules if n.startswith("cli_shop_project")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delenv("REFLUXO_APP", raising=False)
    monkeypatch.setenv("REFLUXO_DB", str(tmp_path / "shop.db"))
    return tmp_path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def status_json(run_id: str) -> dict[str, Any]:
    result = invoke("status", run_id, "--json")
    view: dict[str, Any] = json.loads(result.output)
    return view


def test_run_names_the_run_and_prints_a_resume_line_that_works_when_pasted(
    project: Path,
) -> None:
    started = invoke("run", "order", "--run-id", "o-1")

    assert started.exit_code == 0, started.output
    assert started.output.startswith("run o-1 of order\n")
    assert "run o-1: paused at 'approve': waiting for a resume" in started.output
    assert 'it paused with: {"question": "Ship it?"}' in started.output  # its question
    line = next(x for x in started.output.splitlines() if "refluxo resume" in x)
    pasted = shlex.split(line.split(": ", 1)[1])
    assert pasted[:3] == ["refluxo", "resume", "o-1"]

    resumed = invoke(*pasted[1:])  # the line as a shell splits it, without "refluxo"

    assert "approve" in resumed.output
    assert "ship           attempt 1 failed: RuntimeError: the warehouse is on fire" in (
        resumed.output
    )
    assert "run o-1: failed at 'ship'" in resumed.output
    assert resumed.exit_code == 1  # a resume that ends in a failed run


def test_resume_without_a_payload_is_refused_and_the_run_stays_paused(project: Path) -> None:
    invoke("run", "order", "--run-id", "o-2")
    before = status_json("o-2")

    refused = invoke("resume", "o-2")

    assert refused.exit_code == 2
    assert "--payload is required" in refused.output
    after = status_json("o-2")  # nothing was sent to the node
    assert (after["status"], after["version"]) == ("paused", before["version"])


def test_status_is_a_summary_with_iso_times_and_a_timeline_table(project: Path) -> None:
    invoke("run", "order", "--run-id", "o-3")

    shown = invoke("status", "o-3")

    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == "run       o-3"
    assert lines[2] == "status    paused at 'approve': waiting for a resume"
    assert lines[3].strip() == 'it paused with: {"question": "Ship it?"}'
    assert "refluxo resume o-3 --payload '{}'" in lines[4]
    assert re.search(r"^started   " + ISO.pattern + r" \((now|\d+ \w+ ago)\)$", shown.output, re.M)
    assert not EPOCH_MS.search(shown.output), shown.output
    header = next(line for line in lines if line.startswith("SEQ"))
    assert header.split() == ["SEQ", "NODE", "ATTEMPT", "TIME", "AFTER", "OUTPUT"]
    assert any(line.split()[:3] == ["0", "start", "1"] for line in lines)


def test_run_leaves_a_map_held_by_paused_children_naming_them(project: Path) -> None:
    started = invoke("run", "approve-all", "--run-id", "m-0", "--wait", "0.2")

    assert started.exit_code == 0, started.output
    ids = status_json("m-0")["children"]["runIds"]
    assert "'each' waits for its 4 child runs" in started.output
    assert (
        f"'each' still waits after 0.2 s; children paused for a resume: {ids[0]}, {ids[1]} "
        f"(refluxo resume {ids[0]} --payload '{{}}')"
    ) in started.output
    assert "run m-0: waiting at 'each' for its 4 child runs" in started.output


def test_status_shows_a_runs_children_and_a_childs_parent(project: Path) -> None:
    invoke("run", "approve-all", "--run-id", "m-1", "--wait", "0")
    ids = status_json("m-1")["children"]["runIds"]

    waiting = invoke("status", "m-1").output.splitlines()
    child = invoke("status", ids[1]).output.splitlines()
    invoke("cancel", "m-1")
    cancelled = invoke("status", "m-1").output.splitlines()

    assert "children  4 child runs of map node each: waiting for them (at most 2 at once)" in (
        waiting
    )
    assert f"          {ids[0]}, {ids[1]}, {ids[2]}, ..." in waiting
    assert "parent    m-1 (node each, item 1)" in child
    assert "children  4 child runs of map node each: cancelled with the run" in cancelled


def test_a_failed_run_exits_1_for_run_and_status_json_or_not(project: Path) -> None:
    invoke("run", "order", "--run-id", "o-4")
    assert invoke("resume", "o-4", "--payload", "{}").exit_code == 1

    shown = invoke("status", "o-4")
    assert shown.exit_code == 1
    assert "status    failed at 'ship': " in shown.output
    assert "the warehouse is on fire" in shown.output
    as_json = invoke("status", "o-4", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["status"] == "failed"


def test_a_retry_due_later_than_wait_is_said_with_its_time_and_marked_on_the_graph(
    project: Path,
) -> None:
    started = invoke("run", "retry-later", "--run-id", "r-1", "--wait", "0")

    assert started.exit_code == 0, started.output
    said = started.output
    assert "run r-1: retrying 'send' after 1 failed attempt; next attempt at " in said
    assert ISO.search(said)
    assert "(in 60 min)" in said
    assert "`refluxo serve` (or the deployed runtime) must be running to fire it" in said
    assert not EPOCH_MS.search(said), said

    drawn = invoke("graph", "--run", "r-1")
    assert "send<br/><i>later</i> retrying (1 failed)" in drawn.output
    assert re.search(r"class n\d_send retrying", drawn.output), drawn.output


def test_a_timer_due_later_than_wait_says_what_fires_it(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("REFLUXO_DB", str(tmp_path / "t.db"))
    started = invoke("run", "timed-wait", "--input", '{"seconds": 10800}', "--run-id", "w-1")

    assert started.exit_code == 0, started.output
    assert "run w-1: paused at 'remind_later' until " in started.output
    assert "(in 3 h)" in started.output
    assert "`refluxo serve` (or the deployed runtime) must be running to fire it" in (
        started.output
    )
    assert "or end the wait now with: refluxo resume w-1 --payload '{}'" in started.output
    assert not EPOCH_MS.search(started.output), started.output


def test_a_timer_within_wait_is_followed_to_the_end(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("REFLUXO_DB", str(tmp_path / "t.db"))
    started = invoke("run", "timed-wait", "--input", '{"seconds": 1}', "--wait", "30")

    assert started.exit_code == 0, started.output
    assert "... timer of 'remind_later' at " in started.output
    assert "remind         -> " in started.output
    assert started.output.rstrip().endswith(": completed")


def test_list_has_a_header_filters_and_json(project: Path) -> None:
    invoke("run", "order", "--run-id", "o-5")
    invoke("run", "retry-later", "--run-id", "r-2", "--wait", "0")

    listed = invoke("list")
    lines = listed.output.splitlines()
    assert lines[0].split() == ["RUN", "WORKFLOW", "STATUS", "NODE", "RESULTS", "UPDATED"]
    assert [line.split()[0] for line in lines[1:]] == ["r-2", "o-5"]

    only = invoke("list", "--workflow", "order", "--json")
    assert [run["runId"] for run in json.loads(only.output)["runs"]] == ["o-5"]
    paused = invoke("list", "--status", "paused")
    assert [line.split()[0] for line in paused.output.splitlines()[1:]] == ["o-5"]
    assert invoke("list", "--workflow", "nothing").output == "no runs matching the filters\n"


def test_graph_takes_a_registered_workflow_and_draws_svg_with_the_failed_node(
    project: Path,
) -> None:
    invoke("run", "order", "--run-id", "o-6")
    invoke("resume", "o-6", "--payload", "{}")

    text = invoke("graph", "order", "--run", "o-6")
    assert text.exit_code == 0, text.output
    assert re.search(r"class n\d_ship failed", text.output), text.output

    svg = invoke("graph", "order", "--run", "o-6", "--format", "svg")
    root = ET.fromstring(svg.output)
    states = {
        group.get("data-node"): group.get("data-state")
        for group in root.iter("{http://www.w3.org/2000/svg}g")
    }
    assert states == {"start": "done", "approve": "done", "ship": "failed"}

    as_json = json.loads(invoke("graph", "--run", "o-6", "--format", "json").output)
    assert [node["id"] for node in as_json["nodes"]] == ["start", "approve", "ship"]
    assert as_json["states"]["ship"] == {"state": "failed", "visits": 0, "failures": 1}
    assert as_json["states"]["approve"]["visits"] == 1

    unknown = invoke("graph", "nope")
    assert unknown.exit_code == 1
    assert "unknown workflow 'nope'" in unknown.output


def test_graph_open_shows_the_picture_or_the_inspector_page(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def show(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", show)
    invoke("run", "order", "--run-id", "o-7")

    local = invoke("graph", "--run", "o-7", "--open", "-o", str(project / "o7.svg"))
    assert local.exit_code == 0, local.output
    assert opened == [(project / "o7.svg").resolve().as_uri()]
    assert 'data-state="paused"' in (project / "o7.svg").read_text()

    remote = invoke("graph", "--run", "o 8", "--open", "--url", "http://127.0.0.1:9/")
    assert remote.exit_code == 0, remote.output
    assert opened[-1] == "http://127.0.0.1:9/ui#/runs/o%208"


def test_an_app_named_wrongly_in_pyproject_says_where(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.refluxo]\napp = "no_such_module:app"\n')

    result = invoke("run", "order")

    assert result.exit_code == 2
    assert "no_such_module" in result.output
    assert str(project / "pyproject.toml") in result.output


def test_app_flag_wins_over_the_project(project: Path) -> None:
    result = invoke("run", "order", "--app", DEFAULT_APP)
    assert result.exit_code == 1
    assert "unknown workflow 'order'" in result.output


def test_every_option_s_help_names_its_environment_variable() -> None:
    for command in ("run", "status", "list", "resume", "graph", "serve"):
        shown = invoke(command, "--help").output
        assert "REFLUXO_APP" in shown or command == "status", command
        assert "env var:" in shown
    assert "REFLUXO_GRAPH_FORMAT" in invoke("graph", "--help").output
    assert "REFLUXO_WAIT" in invoke("run", "--help").output


def test_run_resume_and_cancel_print_the_view_as_json_for_scripts(project: Path) -> None:
    started = invoke("run", "order", "--run-id", "o-9", "--json")
    assert started.exit_code == 0, started.output
    view = json.loads(started.output)  # nothing but the view on standard output
    assert (view["runId"], view["status"], view["currentNodeId"]) == ("o-9", "paused", "approve")

    resumed = invoke("resume", "o-9", "--payload", "{}", "--json")
    assert resumed.exit_code == 1
    assert json.loads(resumed.output)["status"] == "failed"

    invoke("run", "order", "--run-id", "o-10")
    cancelled = json.loads(invoke("cancel", "o-10", "--json").output)
    assert cancelled["snapshot"]["metadata"]["failedReason"] == "Cancelled"
