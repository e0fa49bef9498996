"""The one checker of a workflow's graph, used wherever a workflow is accepted.

``App.workflow`` (registration), ``WorkflowEngine.validate_workflow`` and
``refluxo validate`` (which adds the line of each problem) all ask this module, so a rule
cannot hold in one place and not in another. Problems name the node or edge by position,
for callers that map positions back to a file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from refluxo.branches import declared_handles, did_you_mean, nearest, unknown_handle_message
from refluxo.definitions import NodeDefinition
from refluxo.errors import WorkflowDefinitionError
from refluxo.expressions import validate_template
from refluxo.model import WorkflowDefinition, default_start
from refluxo.references import node_references

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class GraphProblem:
    """One problem: an ``error`` stops the workflow from being used, a ``warning`` not.

    ``node`` / ``edge``: the position of the node or edge concerned in the workflow's
    lists, or None for the workflow as a whole. ``value``: the word found wrong (a node
    type, a handle, a referenced node id), and ``suggestion`` the nearest valid one, when
    there is one: what a machine reading ``refluxo validate --json`` may offer to fix.
    """

    severity: Severity
    message: str
    node: int | None = None
    edge: int | None = None
    value: str | None = None
    suggestion: str | None = None


def check_graph(
    workflow: WorkflowDefinition,
    *,
    node_types: Collection[str] | Mapping[str, NodeDefinition] | None = None,
    start: str | None = None,
    expressions: bool = True,
) -> list[GraphProblem]:
    """Every problem of ``workflow``'s graph.

    Errors: a node type not in ``node_types`` (when given), an edge whose ``sourceHandle``
    its source node's type does not declare (when ``node_types`` maps names to
    definitions; a type declaring no handles accepts any), an edge to or from a node that
    does not exist, a ``start`` that is not a node, a ``{{ }}`` expression that does not
    parse or reads ``nodes.<id>`` of a node that does not exist (when ``expressions``).
    Warnings: an edge that can never be taken (an earlier edge from the same node has the
    same handle, or ``sourceHandle: null``), a node unreachable from the start.
    """
    problems: list[GraphProblem] = []
    ids = {node.id: index for index, node in enumerate(workflow.nodes)}
    for index, node in enumerate(workflow.nodes):
        if node_types is not None and node.type not in node_types:
            suggestion = nearest(node.type, node_types)
            problems.append(
                GraphProblem(
                    "error",
                    f"Node definition not found for type: {node.type} (node {node.id!r})"
                    f"{did_you_mean(suggestion)}",
                    index,
                    value=node.type,
                    suggestion=suggestion,
                )
            )
        if expressions:
            problems.extend(_expression_problems(node.id, index, node.data, ids))
    problems.extend(_handle_problems(workflow, node_types))
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


def _expression_problems(
    node_id: str, index: int, data: Any, ids: Collection[str]
) -> Iterator[GraphProblem]:
    """Syntax errors of a node's ``{{ }}`` expressions, and their reads of absent nodes."""
    for path, text in _strings(data, "data"):
        ok, message = validate_template(text)
        if not ok:
            yield GraphProblem("error", f"node {node_id!r} {path}: {message}", index)
            continue
        for reference in node_references(text):
            if reference.node_id in ids:
                continue
            suggestion = nearest(reference.node_id, ids)
            yield GraphProblem(
                "error",
                f"node {node_id!r} {path}: reads {reference.written}, but the workflow has "
                f"no node {reference.node_id!r}{did_you_mean(suggestion)}",
                index,
                value=reference.node_id,
                suggestion=suggestion,
            )


def _handle_problems(
    workflow: WorkflowDefinition, node_types: Collection[str] | Mapping[str, NodeDefinition] | None
) -> Iterator[GraphProblem]:
    """Edges whose ``sourceHandle`` the source node's type never returns.

    Only types whose definitions declare handles are checked; an edge without a
    ``sourceHandle`` (the default edge) and an edge from an absent node (reported as
    dangling) are not.
    """
    if not isinstance(node_types, Mapping):
        return
    types = {node.id: node.type for node in workflow.nodes}
    for index, edge in enumerate(workflow.edges):
        if edge.source_handle is None or edge.source not in types:
            continue
        type_name = types[edge.source]
        definition = node_types.get(type_name)
        handles = (
            declared_handles(definition.metadata)
            if isinstance(definition, NodeDefinition)
            else None
        )
        if handles is None or edge.source_handle in handles:
            continue
        suggestion = nearest(edge.source_handle, handles)
        yield GraphProblem(
            "error",
            unknown_handle_message(edge, type_name, handles, suggestion),
            edge=index,
            value=edge.source_handle,
            suggestion=suggestion,
        )


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
