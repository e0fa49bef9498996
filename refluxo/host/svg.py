"""A workflow's graph as an SVG picture, drawn in Python (no browser, no Mermaid tooling).

``refluxo graph --format svg`` writes it; any browser or image viewer shows it. The layout
is simple and deterministic: each node sits on the row of its shortest distance from the
start (nodes the start does not reach go below), rows are centred, edges are straight
lines down, and an edge going back up (a loop) is a curve on the right. Nodes are coloured
by what a run made of them, as the inspector colours them (:data:`FILL`); every text is
escaped, so a node id cannot inject markup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from refluxo.host.mermaid import state_note
from refluxo.host.run_graph import RunPath

FILL = {
    "": ("#ffffff", "#9e9e9e"),
    "done": ("#d4f7d4", "#2e7d32"),
    "current": ("#e3f2fd", "#1565c0"),
    "paused": ("#e3f2fd", "#1565c0"),
    "waiting": ("#ede7f6", "#5e35b1"),
    "retrying": ("#fff3e0", "#ef6c00"),
    "failed": ("#ffebee", "#c62828"),
}
"""Each state's fill and stroke."""

CHAR_W = 7.4
NODE_H = 46
ROW_GAP = 54
COL_GAP = 28
MARGIN = 24
LOOP_DROP = 14
"""How far below its node a loop's line runs before it turns back up."""


def _rows(graph: Mapping[str, Any]) -> list[list[str]]:
    ids = [node["id"] for node in graph["nodes"]]
    following: dict[str, list[str]] = {node: [] for node in ids}
    for edge in graph["edges"]:
        if edge["source"] in following and edge["target"] in following:
            following[edge["source"]].append(edge["target"])
    start = graph.get("start") or (ids[0] if ids else None)
    depth: dict[str, int] = {}
    if start in following:
        depth[start] = 0
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for target in following[node]:
                if target not in depth:
                    depth[target] = depth[node] + 1
                    queue.append(target)
    below = max(depth.values(), default=-1) + 1
    rows: list[list[str]] = []
    for node in ids:
        row = depth.get(node, below)
        while len(rows) <= row:
            rows.append([])
        rows[row].append(node)
    return [row for row in rows if row]


def to_svg(graph: Mapping[str, Any], run: RunPath | None = None) -> str:
    """An SVG document of ``graph``, with ``run``'s node states and followed edges."""
    types = {node["id"]: node["type"] for node in graph["nodes"]}
    states = run.states if run else {}
    taken = run.taken if run else set()
    labels: dict[str, tuple[str, str]] = {}
    for node, kind in types.items():
        found = states.get(node)
        note = state_note(*found) if found else ""
        labels[node] = (node, f"{kind} · {note}" if note else kind)
    width_of = {
        node: max(90.0, CHAR_W * max(len(a), len(b)) + 24) for node, (a, b) in labels.items()
    }
    rows = _rows(graph)
    row_widths = [sum(width_of[n] for n in row) + COL_GAP * (len(row) - 1) for row in rows]
    canvas_w = max(row_widths, default=0) + 2 * MARGIN + 80  # room for loop curves
    box: dict[str, tuple[float, float, float]] = {}  # x, y, width
    for index, row in enumerate(rows):
        x = MARGIN + (canvas_w - 80 - 2 * MARGIN - row_widths[index]) / 2
        y: float = MARGIN + index * (NODE_H + ROW_GAP)
        for node in row:
            box[node] = (x, y, width_of[node])
            x += width_of[node] + COL_GAP
    canvas_h = MARGIN * 2 + LOOP_DROP + len(rows) * NODE_H + max(len(rows) - 1, 0) * ROW_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas_w:.0f}" '
        f'height="{canvas_h:.0f}" viewBox="0 0 {canvas_w:.0f} {canvas_h:.0f}" '
        'font-family="sans-serif" font-size="12">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" '
        'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" '
        'fill="#616161"/></marker>'
        '<marker id="arrow-taken" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" '
        'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" '
        'fill="#2e7d32"/></marker></defs>',
        f'<rect width="{canvas_w:.0f}" height="{canvas_h:.0f}" fill="#fafafa"/>',
    ]
    for edge in graph["edges"]:
        source, target = edge["source"], edge["target"]
        if source not in box or target not in box:
            continue
        sx, sy, sw = box[source]
        tx, ty, tw = box[target]
        followed = (source, target) in taken
        colour, marker = ("#2e7d32", "arrow-taken") if followed else ("#616161", "arrow")
        stroke = f'stroke="{colour}" stroke-width="{3 if followed else 1.5}" fill="none"'
        if ty > sy:
            x1, y1, x2, y2 = sx + sw / 2, sy + NODE_H, tx + tw / 2, ty
            path = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}"
            mid = (x1 + (x2 - x1) * 0.6, y1 + (y2 - y1) * 0.6)
            anchor = "end" if x2 < x1 else "start"
        else:  # back to a node on the same row or above: a loop, routed around the right
            x1, y1 = sx + sw / 2, sy + NODE_H
            below = y1 + LOOP_DROP
            x2, y2 = tx + tw, ty + NODE_H / 2
            low, high = min(sy, ty), max(sy, ty)
            right = max(bx + bw for bx, by, bw in box.values() if low <= by <= high)
            lane = right + 30  # beyond every node between, so the line crosses none
            path = (
                f"M{x1:.1f},{y1:.1f} L{x1:.1f},{below:.1f} L{lane:.1f},{below:.1f} "
                f"L{lane:.1f},{y2:.1f} L{x2:.1f},{y2:.1f}"
            )
            mid = (lane + 2, (below + y2) / 2)
            anchor = "start"
        title = escape(f"{source} → {target}")
        parts.append(
            f'<path class="edge" d="{path}" {stroke} marker-end="url(#{marker})">'
            f"<title>{title}</title></path>"
        )
        handle = edge.get("sourceHandle")
        if handle:
            parts.append(
                f'<text x="{mid[0] + (-6 if anchor == "end" else 6):.1f}" y="{mid[1]:.1f}" '
                f'text-anchor="{anchor}" fill="#424242" font-style="italic">'
                f"{escape(str(handle))}</text>"
            )
    for node, (x, y, w) in box.items():
        found = states.get(node)
        state = found.state if found else ""
        if not state and found and found.visits:
            state = "done"
        fill, stroke = FILL.get(state, FILL[""])
        heavy = 3 if state and state != "done" else 1.5
        name, detail = labels[node]
        parts.append(
            f'<g class="node" data-node="{escape(node, {chr(34): "&quot;"})}" '
            f'data-state="{state or "unreached"}">'
            f"<title>{escape(name)}: {escape(state or 'not reached')}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{NODE_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{heavy}"/>'
            f'<text x="{x + w / 2:.1f}" y="{y + 19:.1f}" text-anchor="middle" '
            f'font-weight="bold">{escape(name)}</text>'
            f'<text x="{x + w / 2:.1f}" y="{y + 36:.1f}" text-anchor="middle" '
            f'fill="#555555">{escape(detail)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


__all__ = ["FILL", "to_svg"]
