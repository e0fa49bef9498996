"""The one checker of a workflow's graph, used wherever a workflow is accepted.

``App.workflow`` (registration), ``WorkflowEngine.validate_workflow`` and
``refluxo validate`` (which adds the line of each problem) all ask this module, so a rule
cannot hold in one place and not in another. Problems name the node or edge by position,
for callers that map positions back to a file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from refluxo.errors import WorkflowDefinitionError
from refluxo.expressions import validate_template
from refluxo.model import WorkflowDefinition, default_start

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class GraphProblem:
    """One problem: an ``error`` stops the workflow from being used, a ``warning`` not.

    ``node`` / ``edge``: the position of the node or edge concerned in the workflow's
    lists, or None for the workflow as a whole.
    """

    severity: Severity
    message: str
    node: int | None = None
    edge: int | None = None


def check_graph(
    workflow: WorkflowDefinition,
    *,
    node_types: Collection[str] | None = None,
    start: str | None = None,
    expressions: bool = True,
) -> list[GraphProblem]:
    """Every problem of ``workflow``'s graph.

    Errors: a node type not in ``node_types`` (when given), an edge to or from a node that
    does not exist, a ``start`` that is not a node, a ``{{ }}`` expression that does not
    parse (when ``expressions``). Warnings: an edge that can never be taken (an earlier edge
    from the same node has the same handle, or ``sourceHandle: null``), a node unreachable
    from the start.
    """
    problems: list[GraphProblem] = []
    ids = {node.id: index for index, node in enumerate(workflow.nodes)}
    for index, node in enumerate(workflow.nodes):
        if node_types is not None and node.type not in node_types:
            problems.append(
                GraphProblem(
                    "error",
                    f"Node definition not found for type: {node.type} (node {node.id!r})",
                    index,
                )
            )
        if expressions:
            for path, text in _strings(node.data, "data"):
                ok, message = validate_template(text)
                if not ok:
                    problems.append(
                        GraphProblem("error", f"node {node.id!r} {path}: {message}", index)
                    )
    targets: dict[str, list[str]] = {}
    incoming: set[str] = set()
    taken: set[tuple[str, str | None]] = set()
    for index, edge in enumerate(workflow.edges):
        for end, label in ((edge.source, "source"), (edge.target, "target")):
            if end not in ids:
                problems.append(
                    GraphProblem(
                        "error", f"edge {label} {end!r} is not a node (dangling edge)", edge=index
                    )
                )
        incoming.add(edge.target)
        if edge.null_handle:
            problems.append(
                GraphProblem(
                    "warning",
                    f"edge {edge.source!r} -> {edge.target!r} is never taken: its sourceHandle "
                    "is null, and a node returning no handle takes only edges without one "
                    "(as in @refluxo/core); leave sourceHandle out",
                    edge=index,
                )
            )
            continue
        targets.setdefault(edge.source, []).append(edge.target)
        branch = (edge.source, edge.source_handle)
        if branch in taken:
            problems.append(
                GraphProblem(
                    "warning",
                    f"edge {edge.source!r} -> {edge.target!r} is never taken: an earlier edge "
                    f"from {edge.source!r} has the same handle {edge.source_handle!r}",
                    edge=index,
                )
            )
        taken.add(branch)
    if start is not None and start not in ids:
        problems.append(GraphProblem("error", f"start node {start!r} is not a node"))
    elif ids:
        first = start if start is not None else default_start(list(ids), incoming)
        reachable = _reachable(first, targets)
        for node_id, index in ids.items():
            if node_id not in reachable:
                problems.append(
                    GraphProblem(
                        "warning", f"node {node_id!r} is unreachable from {first!r}", index
                    )
                )
    return problems


def raise_for_errors(problems: list[GraphProblem], what: str) -> None:
    """Raise :class:`WorkflowDefinitionError` listing every error of ``problems``, if any."""
    errors = [problem.message for problem in problems if problem.severity == "error"]
    if errors:
        raise WorkflowDefinitionError(f"{what}: " + "; ".join(errors))


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _reachable(start: str, targets: dict[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for target in targets.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen
