"""Mermaid flowcharts of workflows, with what a run did marked on them.

Takes the graph as plain JSON (:mod:`refluxo.host.run_graph`). With a run, the nodes it
visited and the edges it followed are green, the node it failed at red, a node waiting for
a retry orange, a paused node blue; a node's visit count shows when above one, and its
failed attempts when it had any. Paste the text into any Mermaid renderer, or ask
``refluxo graph --format svg`` for a picture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from refluxo.host.run_graph import RunPath

_SAFE = re.compile(r"[^A-Za-z0-9_]")

STATE_STYLES = {
    "done": "fill:#d4f7d4,stroke:#2e7d32,stroke-width:2px",
    "current": "fill:#e3f2fd,stroke:#1565c0,stroke-width:3px",
    "paused": "fill:#e3f2fd,stroke:#1565c0,stroke-width:3px",
    "waiting": "fill:#ede7f6,stroke:#5e35b1,stroke-width:3px",
    "retrying": "fill:#fff3e0,stroke:#ef6c00,stroke-width:3px",
    "failed": "fill:#ffebee,stroke:#c62828,stroke-width:3px",
}
"""Each state's look; ``done`` is the class ``visited`` (its name in earlier versions)."""


def _mermaid_id(node_id: str, index: int) -> str:
    return f"n{index}_{_SAFE.sub('_', node_id)}"


_PLAIN = re.compile(r"[A-Za-z0-9 _.,:/()+=*?!@$%^~'-]")


def _label(text: str) -> str:
    """``text`` inside a label: every character but plain ones as a Mermaid entity code
    (``#60;``), so that no node id, type or handle can close the label, start a new
    statement (a newline, a ``|``), or carry HTML (``<``) into the picture."""
    return "".join(char if _PLAIN.fullmatch(char) else f"#{ord(char)};" for char in text)


def state_note(state: str, visits: int, failures: int) -> str:
    """What a node's label adds: ``x3``, ``failed after 5 attempts``, ``retrying (2 failed)``."""
    notes = [f"x{visits}"] if visits > 1 else []
    if state == "failed":
        notes.append(f"failed after {failures} attempts" if failures > 1 else "failed")
    elif state == "retrying":
        notes.append(f"retrying ({failures} failed)")
    elif state in ("paused", "waiting"):
        notes.append(state)
    return " ".join(notes)


def to_mermaid(graph: Mapping[str, Any], run: RunPath | None = None) -> str:
    """A ``flowchart TD`` of ``graph``, with ``run``'s path and node states marked."""
    nodes = graph["nodes"]
    ids = {node["id"]: _mermaid_id(node["id"], i) for i, node in enumerate(nodes)}
    states = run.states if run else {}
    taken = run.taken if run else set()

    lines = ["flowchart TD"]
    for node in nodes:
        found = states.get(node["id"])
        note = state_note(*found) if found else ""
        suffix = f" {_label(note)}" if note else ""
        lines.append(
            f'    {ids[node["id"]]}["{_label(node["id"])}<br/><i>{_label(node["type"])}</i>'
            f'{suffix}"]'
        )
    followed: list[int] = []
    for index, edge in enumerate(graph["edges"]):
        source = ids.get(edge["source"], _mermaid_id(edge["source"], 10_000 + index))
        target = ids.get(edge["target"], _mermaid_id(edge["target"], 20_000 + index))
        handle = edge.get("sourceHandle")
        arrow = f"-->|{_label(handle)}|" if handle else "-->"
        lines.append(f"    {source} {arrow} {target}")
        if (edge["source"], edge["target"]) in taken:
            followed.append(index)
    by_state: dict[str, list[str]] = {}
    for node_id, found in states.items():
        if node_id in ids and (found.state or found.visits):
            by_state.setdefault(found.state or "done", []).append(ids[node_id])
    for state, members in by_state.items():
        name = "visited" if state == "done" else state
        lines.append(f"    classDef {name} {STATE_STYLES[state]}")
        lines.append(f"    class {','.join(members)} {name}")
    if followed:
        lines.append(
            f"    linkStyle {','.join(map(str, followed))} stroke:#2e7d32,stroke-width:3px"
        )
    return "\n".join(lines) + "\n"


__all__ = ["STATE_STYLES", "state_note", "to_mermaid"]
