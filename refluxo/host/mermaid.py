"""Mermaid flowcharts of workflows, optionally with the path a run took highlighted."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from refluxo.model import WorkflowDefinition

_SAFE = re.compile(r"[^A-Za-z0-9_]")


def _mermaid_id(node_id: str, index: int) -> str:
    return f"n{index}_{_SAFE.sub('_', node_id)}"


def _label(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(workflow: WorkflowDefinition, path: Sequence[str] = ()) -> str:
    """A ``flowchart TD`` of ``workflow``.

    ``path`` is the sequence of node ids a run executed (its timeline); visited nodes and
    the edges it followed are highlighted, and a node's visit count is shown when above one.
    """
    ids = {node.id: _mermaid_id(node.id, i) for i, node in enumerate(workflow.nodes)}
    visits: dict[str, int] = {}
    for node_id in path:
        visits[node_id] = visits.get(node_id, 0) + 1
    taken = set(itertools.pairwise(path))

    lines = ["flowchart TD"]
    for node in workflow.nodes:
        count = visits.get(node.id, 0)
        suffix = f" x{count}" if count > 1 else ""
        lines.append(
            f'    {ids[node.id]}["{_label(node.id)}<br/><i>{_label(node.type)}</i>{suffix}"]'
        )
    followed: list[int] = []
    for index, edge in enumerate(workflow.edges):
        source = ids.get(edge.source, _mermaid_id(edge.source, 10_000 + index))
        target = ids.get(edge.target, _mermaid_id(edge.target, 20_000 + index))
        arrow = f"-->|{_label(edge.source_handle)}|" if edge.source_handle else "-->"
        lines.append(f"    {source} {arrow} {target}")
        if (edge.source, edge.target) in taken:
            followed.append(index)
    if visits:
        lines.append("    classDef visited fill:#d4f7d4,stroke:#2e7d32,stroke-width:2px")
        lines.append(f"    class {','.join(ids[n] for n in visits if n in ids)} visited")
    if followed:
        lines.append(
            f"    linkStyle {','.join(map(str, followed))} stroke:#2e7d32,stroke-width:3px"
        )
    return "\n".join(lines) + "\n"
