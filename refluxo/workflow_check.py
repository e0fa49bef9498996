"""Static checks of a workflow file, reported with the line of each problem.

Used by ``refluxo validate``. Checks: JSON syntax, the wire shape, duplicate node ids,
edges to unknown nodes, unknown node types and undeclared ``sourceHandle`` values (when the
app is known), nodes unreachable from the start node, ambiguous branches, and every
``{{ }}`` expression (its syntax, and the node ids it reads through ``nodes``). The
workflow-level checks are :func:`refluxo.graph.check_graph`'s, the ones registration makes.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from refluxo.definitions import NodeDefinition
from refluxo.graph import GraphProblem, check_graph
from refluxo.json_objects import DuplicateKey, unique_keys
from refluxo.model import WorkflowDefinition


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem at a line of the file.

    ``node`` (its id) and ``edge`` (its id, else ``"source -> target"``) say what is
    concerned, ``value`` the word found wrong and ``suggestion`` the nearest valid
    one, when known: the fields a program reading ``refluxo validate --json`` acts on.
    """

    line: int
    severity: str  # "error" or "warning"
    message: str
    node: str | None = None
    edge: str | None = None
    value: str | None = None
    suggestion: str | None = None

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.severity}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The problem as a JSON object, leaving out the fields that are not known."""
        return {key: value for key, value in asdict(self).items() if value is not None}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_COLON = re.compile(r"\s*:")


def _second_key(text: str, start: int, key: str) -> int:
    """Where the object whose members begin at ``start`` names ``key`` a second time (the
    object's start if it cannot be told): its own members only, not those of the objects
    and arrays it holds."""
    depth, seen, at = 0, 0, start
    while at < len(text):
        char = text[at]
        if char == '"':
            token = _STRING.match(text, at)
            if token is None:
                break
            after = token.end()
            if depth == 0 and _COLON.match(text, after) and json.loads(token.group()) == key:
                seen += 1
                if seen == 2:
                    return at
            at = after
            continue
        if char in "{[":
            depth += 1
        elif char in "}]":
            if depth == 0:
                break
            depth -= 1
        at += 1
    return start


def _parse_with_lines(text: str) -> tuple[Any, dict[int, int]]:
    """Parse JSON, remembering the line on which each object starts (by ``id()``)."""
    lines: dict[int, int] = {}
    decoder: Any = json.JSONDecoder()
    parse_object = decoder.parse_object
    # Where each line ends, found once: an object's line is a binary search, not a count
    # of the newlines before it (which made large files quadratic).
    newlines = [match.start() for match in re.finditer("\n", text)]

    def tracking(state: tuple[str, int], *args: Any) -> tuple[Any, int]:
        try:
            value, after = parse_object(state, *args)
        except DuplicateKey as repeated:
            if not hasattr(repeated, "line"):  # the innermost object: the key's second copy
                at = _second_key(text, state[1], repeated.key)
                repeated.line = bisect_left(newlines, at) + 1  # type: ignore[attr-defined]
            raise
        lines[id(value)] = bisect_left(newlines, state[1]) + 1
        return value, after

    decoder.parse_object = tracking
    decoder.object_pairs_hook = unique_keys
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder.decode(text), lines


def duplicate_key_line(text: str) -> int | None:
    """The line of the first key given twice in an object of ``text`` (JSON), if any."""
    try:
        _parse_with_lines(text)
    except DuplicateKey as repeated:
        return int(getattr(repeated, "line", 1))
    except ValueError:
        return None
    return None


T = TypeVar("T")

BOM_PROBLEM = "the text starts with a byte order mark (U+FEFF): save it as UTF-8 without one"

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]|NaN|-?Infinity')
_LONE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<![0-9a-fA-F]{4})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
MAX_WORKFLOW_DEPTH = 64
"""How deep a workflow file may nest (the HTTP API's bound for what it reads)."""


class WorkflowTextError(ValueError):
    """A workflow file's text that is not JSON as refluxo reads it, and the line where."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def workflow_text(raw: bytes) -> str:
    """A workflow file's bytes as text. Raises :class:`WorkflowTextError` for a byte order
    mark or bytes that are not UTF-8 (naming the byte and its line)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise WorkflowTextError(1, f"invalid JSON: {BOM_PROBLEM}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise WorkflowTextError(
            line, f"invalid JSON: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None


def read_workflow_json(text: str) -> Any:
    """``text`` as JSON, strictly: refused with the line where (:class:`WorkflowTextError`)
    if it nests deeper than :data:`MAX_WORKFLOW_DEPTH`, holds ``NaN`` or an infinity (not
    JSON; the HTTP API refuses them too), a key given twice in an object, or a string with
    a lone UTF-16 surrogate (no UTF-8 text, nor a store, holds it)."""
    return _read(text, lambda checked: json.loads(checked, object_pairs_hook=unique_keys))


def _read(text: str, parse: Callable[[str], T]) -> T:
    """``parse(text)`` under :func:`read_workflow_json`'s rules, whatever the parser (the
    fast one, or the one that remembers lines)."""
    if text.startswith("\ufeff"):
        raise WorkflowTextError(1, f"invalid JSON: {BOM_PROBLEM}")
    _scan(text)
    try:
        value = parse(text)
    except json.JSONDecodeError as err:
        raise WorkflowTextError(
            err.lineno, f"invalid JSON: {err.msg} (column {err.colno})"
        ) from None
    except DuplicateKey as err:
        line = getattr(err, "line", None) or duplicate_key_line(text) or 1
        raise WorkflowTextError(line, f"invalid JSON: {err}") from None
    lone = _LONE.search(text)
    if lone is not None:
        line = text.count("\n", 0, lone.start()) + 1
        raise WorkflowTextError(line, f"invalid JSON: a lone UTF-16 surrogate ({lone.group()})")
    return value


def _scan(text: str) -> None:
    """Refuse, before any parser recurses into it, a text nested too deep, and ``NaN`` or
    an infinity outside strings."""
    depth = 0
    for token in _TOKEN.finditer(text):
        kind = token.group()[0]
        if kind == '"':
            continue
        if kind in "[{":
            depth += 1
            if depth > MAX_WORKFLOW_DEPTH:
                line = text.count("\n", 0, token.start()) + 1
                raise WorkflowTextError(
                    line, f"invalid JSON: nested more than {MAX_WORKFLOW_DEPTH} levels deep"
                )
        elif kind in "]}":
            depth -= 1
        else:
            line = text.count("\n", 0, token.start()) + 1
            raise WorkflowTextError(line, f"invalid JSON: {token.group()} is not a JSON number")


def check_workflow_text(
    text: str,
    known_types: Collection[str] | Mapping[str, NodeDefinition] | None = None,
    more: Callable[[WorkflowDefinition], list[GraphProblem]] | None = None,
    *,
    max_nodes: int | None = None,
    max_edges: int | None = None,
) -> list[Problem]:
    """Every problem found in a workflow file's text, in line order.

    ``known_types``: the app's node types; given as definitions, their declared handles
    are checked too. ``more``: further checks of the parsed workflow (a runtime's checks
    of its own node types' data), reported like the graph's. ``max_nodes``,
    ``max_edges``: the sizes a runtime registers (a larger workflow is that one problem).
    """
    try:
        raw, lines = _read(text, _parse_with_lines)
    except WorkflowTextError as err:
        return [Problem(err.line, "error", err.message)]
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
    for what, items, limit in (("nodes", nodes, max_nodes), ("edges", edges, max_edges)):
        if limit is not None and len(items) > limit:
            return [Problem(line_of(raw), "error", f"{len(items)} {what}; the limit is {limit}")]

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
    found_problems = check_graph(workflow, node_types=known_types, start=start)
    if more is not None:
        found_problems += more(workflow)
    for found in found_problems:
        node = edge = None
        if found.node is not None:
            line = line_of(nodes[found.node])
            node = workflow.nodes[found.node].id
        elif found.edge is not None:
            line = line_of(edges[found.edge])
            found_edge = workflow.edges[found.edge]
            edge = found_edge.id or f"{found_edge.source} -> {found_edge.target}"
        else:
            line = line_of(raw)
        problems.append(
            Problem(
                line,
                found.severity,
                found.message,
                node=node,
                edge=edge,
                value=found.value,
                suggestion=found.suggestion,
            )
        )
    return sorted(problems, key=lambda p: p.line)
