"""Static checks of a workflow file, reported with the line of each problem.

Used by ``refluxo validate``. Checks: JSON syntax, the wire shape, duplicate node ids,
edges to unknown nodes, unknown node types (when the app is known), nodes unreachable from
the start node, ambiguous branches, and the syntax of every ``{{ }}`` expression.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from refluxo.expressions import validate_template
from refluxo.model import WorkflowDefinition, default_start


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


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


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

    ids: dict[str, Any] = {}
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            problems.append(Problem(line_of(node), "error", "a node needs a string 'id'"))
            continue
        if not isinstance(node.get("type"), str):
            problems.append(
                Problem(line_of(node), "error", f"node {node['id']!r} needs a string 'type'")
            )
        elif known_types is not None and node["type"] not in known_types:
            problems.append(
                Problem(
                    line_of(node),
                    "error",
                    f"node {node['id']!r} has unknown type {node['type']!r}",
                )
            )
        if node["id"] in ids:
            problems.append(Problem(line_of(node), "error", f"duplicate node id {node['id']!r}"))
        ids[node["id"]] = node
        for path, string in _strings(node.get("data"), "data"):
            ok, message = validate_template(string)
            if not ok:
                problems.append(
                    Problem(line_of(node), "error", f"node {node['id']!r} {path}: {message}")
                )

    targets: dict[str, list[str]] = {}
    seen_branches: dict[tuple[str, Any], Any] = {}
    for edge in edges:
        if not isinstance(edge, dict):
            problems.append(Problem(line_of(edge), "error", "an edge must be an object"))
            continue
        source, target = edge.get("source"), edge.get("target")
        for end, label in ((source, "source"), (target, "target")):
            if not isinstance(end, str):
                problems.append(
                    Problem(line_of(edge), "error", f"an edge needs a string {label!r}")
                )
            elif end not in ids:
                problems.append(
                    Problem(
                        line_of(edge),
                        "error",
                        f"edge {label} {end!r} is not a node (dangling edge)",
                    )
                )
        handle = edge.get("sourceHandle", edge.get("source_handle"))
        if isinstance(source, str) and isinstance(target, str):
            targets.setdefault(source, []).append(target)
            key = (source, handle)
            if key in seen_branches:
                problems.append(
                    Problem(
                        line_of(edge),
                        "warning",
                        f"edge {source!r} -> {target!r} is never taken: an earlier edge from "
                        f"{source!r} has the same handle {handle!r}",
                    )
                )
            seen_branches.setdefault(key, edge)

    start = raw.get("start")
    if start is not None and start not in ids:
        problems.append(Problem(line_of(raw), "error", f"start node {start!r} is not a node"))
    elif ids:
        incoming = {target for ts in targets.values() for target in ts}
        first = start if start is not None else default_start(list(ids), incoming)
        reachable = _reachable(first, targets)
        for node_id, node in ids.items():
            if node_id not in reachable:
                problems.append(
                    Problem(
                        line_of(node), "warning", f"node {node_id!r} is unreachable from {first!r}"
                    )
                )
    if not any(p.severity == "error" for p in problems):
        try:
            WorkflowDefinition.model_validate({k: v for k, v in raw.items() if k != "start"})
        except ValidationError as err:
            for issue in err.errors():
                location = ".".join(str(part) for part in issue["loc"])
                problems.append(Problem(line_of(raw), "error", f"{location}: {issue['msg']}"))
    return sorted(problems, key=lambda p: p.line)


def _reachable(start: str, targets: dict[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for target in targets.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen
