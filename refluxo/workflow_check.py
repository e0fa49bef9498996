"""Static checks of a workflow file, reported with the line of each problem.

Used by ``refluxo validate``. Checks: JSON syntax, the wire shape, duplicate node ids,
edges to unknown nodes, unknown node types (when the app is known), nodes unreachable from
the start node, ambiguous branches, and the syntax of every ``{{ }}`` expression.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from refluxo.graph import check_graph
from refluxo.model import WorkflowDefinition


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    severity: str  # "error" or "warning"
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.severity}: {self.message}"


def _parse_with_lines(text: str) -> tuple[Any, dict[int, int]]:
    """Parse JSON, remembering the line on which each object starts (by ``id()``)."""
    lines: dict[int, int] = {}
    decoder: Any = json.JSONDecoder()
    parse_object = decoder.parse_object

    def tracking(state: tuple[str, int], *args: Any) -> tuple[Any, int]:
        source, end = state
        value, after = parse_object(state, *args)
        lines[id(value)] = source.count("\n", 0, end) + 1
        return value, after

    decoder.parse_object = tracking
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text), lines


def check_workflow_text(text: str, known_types: set[str] | None = None) -> list[Problem]:
    """Every problem found in a workflow file's text, in line order."""
    try:
        raw, lines = _parse_with_lines(text)
    except json.JSONDecodeError as err:
        return [Problem(err.lineno, "error", f"invalid JSON: {err.msg} (column {err.colno})")]
    if not isinstance(raw, dict):
        return [Problem(1, "error", "a workflow is a JSON object with 'nodes' and 'edges'")]

    def line_of(value: Any) -> int:
        return lines.get(id(value), 1)

    problems: list[Problem] = []
    nodes = raw.get("nodes")
    edges = raw.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        return [Problem(line_of(raw), "error", "'nodes' must be a non-empty list")]
    if not isinstance(edges, list):
        return [Problem(line_of(raw), "error", "'edges' must be a list")]

    seen: set[str] = set()
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            problems.append(Problem(line_of(node), "error", "a node needs a string 'id'"))
            continue
        if not isinstance(node.get("type"), str):
            problems.append(
                Problem(line_of(node), "error", f"node {node['id']!r} needs a string 'type'")
            )
        if node["id"] in seen:
            problems.append(Problem(line_of(node), "error", f"duplicate node id {node['id']!r}"))
        seen.add(node["id"])
    for edge in edges:
        if not isinstance(edge, dict):
            problems.append(Problem(line_of(edge), "error", "an edge must be an object"))
            continue
        for label in ("source", "target"):
            if not isinstance(edge.get(label), str):
                problems.append(
                    Problem(line_of(edge), "error", f"an edge needs a string {label!r}")
                )
    start = raw.get("start")
    if start is not None and not isinstance(start, str):
        problems.append(Problem(line_of(raw), "error", "'start' must be a node id (a string)"))
    if problems:
        return sorted(problems, key=lambda p: p.line)
    try:
        workflow = WorkflowDefinition.model_validate({k: v for k, v in raw.items() if k != "start"})
    except ValidationError as err:
        for issue in err.errors():
            location = ".".join(str(part) for part in issue["loc"])
            problems.append(Problem(line_of(raw), "error", f"{location}: {issue['msg']}"))
        return problems
    for found in check_graph(workflow, node_types=known_types, start=start):
        if found.node is not None:
            line = line_of(nodes[found.node])
        elif found.edge is not None:
            line = line_of(edges[found.edge])
        else:
            line = line_of(raw)
        problems.append(Problem(line, found.severity, found.message))
    return sorted(problems, key=lambda p: p.line)
