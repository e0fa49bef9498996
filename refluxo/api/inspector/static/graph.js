// The workflow's graph as SVG: nodes in columns by their distance from the start node, each
// coloured by its state in the run and marked with how often it ran.

import { s } from "./dom.js";

const WIDTH = 176;
const HEIGHT = 60;
const GAP_X = 70;
const GAP_Y = 28;
const PAD = 20;

/** What each state is called on the page (the legend, each node's third line). */
export const STATES = {
  done: "done",
  current: "running",
  paused: "paused",
  waiting: "timer",
  retrying: "retrying",
  failed: "failed",
  cancelled: "cancelled",
  idle: "not reached",
};

/** Each node's column: its breadth-first distance from the start (unreachable: last). */
function columns(graph) {
  const targets = new Map(graph.nodes.map((node) => [node.id, []]));
  for (const edge of graph.edges) {
    if (targets.has(edge.source) && targets.has(edge.target)) {
      targets.get(edge.source).push(edge.target);
    }
  }
  const column = new Map();
  const start = targets.has(graph.start) ? graph.start : graph.nodes[0]?.id;
  const queue = start === undefined ? [] : [start];
  if (start !== undefined) column.set(start, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const target of targets.get(id)) {
      if (!column.has(target)) {
        column.set(target, column.get(id) + 1);
        queue.push(target);
      }
    }
  }
  const last = Math.max(-1, ...column.values()) + 1;
  for (const node of graph.nodes) if (!column.has(node.id)) column.set(node.id, last);
  return column;
}

function positions(graph) {
  const column = columns(graph);
  const byColumn = [];
  for (const [id, index] of column) (byColumn[index] ||= []).push(id);
  const rows = Math.max(1, ...byColumn.map((ids) => ids.length));
  const place = new Map();
  byColumn.forEach((ids, index) => {
    const offset = ((rows - ids.length) * (HEIGHT + GAP_Y)) / 2;
    ids.forEach((id, row) => {
      place.set(id, {
        x: PAD + index * (WIDTH + GAP_X),
        y: PAD + offset + row * (HEIGHT + GAP_Y),
        column: index,
      });
    });
  });
  return {
    place,
    width: PAD * 2 + byColumn.length * WIDTH + (byColumn.length - 1) * GAP_X,
    height: PAD * 2 + rows * HEIGHT + (rows - 1) * GAP_Y,
  };
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function edgePath(from, to, below) {
  if (to.column > from.column) {
    const [x1, y1, x2, y2] = [from.x + WIDTH, from.y + HEIGHT / 2, to.x, to.y + HEIGHT / 2];
    const bend = (x2 - x1) / 2;
    return {
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      label: [(x1 + x2) / 2, (y1 + y2) / 2 - 6],
    };
  }
  if (from === to) {
    const [x, y] = [from.x + WIDTH - 30, from.y];
    return { d: `M${x},${y} C${x},${y - 34} ${x + 40},${y - 34} ${x + 30},${y}`, label: [x + 18, y - 30] };
  }
  // Back to an earlier (or the same) column: an arc under the graph.
  const [x1, y1, x2, y2] = [from.x + WIDTH / 2, from.y + HEIGHT, to.x + WIDTH / 2, to.y + HEIGHT];
  return {
    d: `M${x1},${y1} C${x1},${below} ${x2},${below} ${x2},${y2}`,
    label: [(x1 + x2) / 2, below - 22],
  };
}

/**
 * The graph `{start, nodes, edges}` as an SVG element; `states` maps a node id to
 * `{state, visits, note, detail}` (absent: not reached; `detail` goes in the tooltip).
 */
export function drawGraph(graph, states) {
  const { place, width, height } = positions(graph);
  const hasBackEdge = graph.edges.some((edge) => {
    const [a, b] = [place.get(edge.source), place.get(edge.target)];
    return a && b && b.column <= a.column && a !== b;
  });
  const below = height + (hasBackEdge ? 20 : 0);
  const total = below + (hasBackEdge ? PAD : 0);
  const svg = s("svg", {
    class: "graph",
    viewBox: `0 -16 ${Math.max(width, 200)} ${total + 16}`,
    width: Math.max(width, 200),
    height: total + 16,
    role: "img",
    "aria-label": "the workflow's graph, each node coloured by its state",
  });
  svg.append(
    s("defs", {},
      s("marker", {
        id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
        markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse",
      }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))),
  );
  for (const edge of graph.edges) {
    const [from, to] = [place.get(edge.source), place.get(edge.target)];
    if (!from || !to) continue;
    const path = edgePath(from, to, below);
    const group = s("g", { class: "edge", "data-source": edge.source, "data-target": edge.target },
      s("path", { d: path.d, "marker-end": "url(#arrow)" }));
    if (edge.sourceHandle) {
      group.append(s("text", { x: path.label[0], y: path.label[1], "text-anchor": "middle" },
        clip(edge.sourceHandle, 18)));
    }
    svg.append(group);
  }
  for (const node of graph.nodes) {
    const at = place.get(node.id);
    const info = states.get(node.id) || { state: "idle", visits: 0 };
    const label = STATES[info.state] + (info.note ? ` · ${info.note}` : "");
    const group = s("g", {
      class: `node state-${info.state}`,
      "data-node": node.id,
      "data-state": info.state,
      transform: `translate(${at.x},${at.y})`,
      tabindex: 0,
      role: "button",
      "aria-label": `${node.id}: ${label}; show its results`,
    },
    s("title", {}, `${node.id} (${node.type}): ${label}${info.detail ? `, ${info.detail}` : ""}; ` +
      `${info.visits} result(s)`),
    s("rect", { width: WIDTH, height: HEIGHT, rx: 9 }),
    s("text", { class: "node-id", x: 12, y: 20 }, clip(node.id, 17)),
    s("text", { class: "node-type", x: 12, y: 36 }, clip(node.type, 22)),
    s("text", { class: "node-state", x: 12, y: 52 }, clip(label, 24)),
    s("g", { class: "visits" },
      s("circle", { cx: WIDTH - 18, cy: 18, r: 12 }),
      s("text", { x: WIDTH - 18, y: 22, "text-anchor": "middle" },
        info.visits > 99 ? "99+" : String(info.visits))));
    svg.append(group);
  }
  return svg;
}
