// One run: its graph coloured by state, its pending retry or timer, its timeline, and what a
// user may do with it (resume a paused run with a JSON payload, cancel one not finished).
// While the run is not finished the page polls it, backing off while nothing changes.

import { ApiError, cancelRun, getGraph, getRun, resumeRun } from "./api.js";
import { h, show } from "./dom.js";
import { FINISHED, duration, iso, json, relative } from "./format.js";
import { STATES, drawGraph } from "./graph.js";
import { statusBadge } from "./runs.js";

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
const TIMELINE_PAGE = 1000;
const MAX_TIMELINE = 20_000;

/** Each node's state, visits and note, from the run's head and its timeline. */
export function nodeStates(run, timeline) {
  const states = new Map();
  for (const entry of timeline) {
    const state = states.get(entry.nodeId) || { state: "done", visits: 0 };
    state.visits += 1;
    states.set(entry.nodeId, state);
  }
  const current = run.currentNodeId;
  if (current === null || current === undefined) return states;
  const snapshot = run.snapshot || {};
  const metadata = snapshot.metadata || {};
  const retry = snapshot.retryState;
  const info = states.get(current) || { state: "idle", visits: 0 };
  if (run.status === "failed") {
    info.state = metadata.cancelledAt !== undefined ? "cancelled" : "failed";
  } else if (retry && retry.nodeId === current) {
    info.state = "retrying";
    info.note = `attempt ${retry.attempts + 1}`;
    if (typeof retry.nextRetryAt === "number") info.detail = `next attempt at ${iso(retry.nextRetryAt)}`;
  } else if (run.status === "paused") {
    info.state = typeof metadata.resumeAt === "number" ? "waiting" : "paused";
    if (info.state === "waiting") info.detail = `resumes at ${iso(metadata.resumeAt)}`;
  } else if (run.status === "error") {
    info.state = "failed";
  } else if (run.status !== "completed") {
    info.state = "current";
  }
  states.set(current, info);
  return states;
}

function legend() {
  return h("ul", { class: "legend" }, Object.entries(STATES).map(([state, label]) =>
    h("li", {}, h("span", { class: `swatch state-${state}` }), label)));
}

function facts(run, timeline) {
  const snapshot = run.snapshot || {};
  const rows = [
    ["Workflow", run.workflow],
    ["Status", statusBadge(run.status)],
    ["Current node", run.currentNodeId ?? "—"],
    ["Created", h("time", {}, iso(run.createdAt))],
    ["Updated", h("time", {}, iso(run.updatedAt))],
    ["Elapsed", duration(run.updatedAt - run.createdAt)],
    ["Execution time", duration(snapshot.totalExecutionTime)],
    ["Results", `${run.resultCount}${timeline.length < run.resultCount ? ` (${timeline.length} shown)` : ""}`],
    ["Version", String(run.version)],
    ["Definition", h("code", { title: run.definitionVersion }, run.definitionVersion.slice(0, 12))],
  ];
  const reason = (snapshot.metadata || {}).failedReason;
  if (reason !== undefined) rows.push(["Failed because", h("span", { class: "error-text" }, String(reason))]);
  return h("dl", { class: "facts" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function pending(run) {
  const snapshot = run.snapshot || {};
  const retry = snapshot.retryState;
  const resumeAt = (snapshot.metadata || {}).resumeAt;
  const lines = [];
  if (retry) {
    const when = typeof retry.nextRetryAt === "number"
      ? [" at ", h("time", {}, iso(retry.nextRetryAt)), ` (${relative(retry.nextRetryAt)})`]
      : [" as soon as possible"];
    lines.push(h("p", { class: "retry" }, `Retry: node ${retry.nodeId}, attempt ${retry.attempts + 1}`, ...when,
      `; ${retry.attempts} attempt(s) failed so far.`));
  }
  if (run.status === "paused" && typeof resumeAt === "number") {
    lines.push(h("p", { class: "timer" }, `Timer: node ${run.currentNodeId} resumes at `,
      h("time", {}, iso(resumeAt)), ` (${relative(resumeAt)}).`));
  } else if (run.status === "paused") {
    lines.push(h("p", { class: "waiting" },
      `Paused at node ${run.currentNodeId}: it runs again once resumed with a payload.`));
  }
  return lines.length ? h("section", { class: "pending" }, h("h2", {}, "Pending"), lines) : null;
}

function value(label, data) {
  if (data === undefined || data === null) return h("span", { class: "muted" }, "—");
  const compact = JSON.stringify(data, null, 1).replace(/\n */g, " ");
  if (compact.length <= 60) return h("code", { class: label }, compact);
  return h("details", { class: label }, h("summary", {}, `${compact.slice(0, 56)}…`),
    h("pre", {}, json(data)));
}

function timelineTable(run, timeline) {
  if (!timeline.length) return h("p", { class: "empty" }, "No results yet.");
  let previous = run.createdAt;
  const rows = timeline.map((entry) => {
    const took = entry.timestamp - previous;
    previous = entry.timestamp;
    return h("tr", { "data-seq": entry.seq, "data-node": entry.nodeId, class: entry.error ? "failed" : "" },
      h("td", { class: "number" }, String(entry.seq)),
      h("td", {}, entry.nodeId),
      h("td", {}, h("time", {}, iso(entry.timestamp))),
      h("td", { class: "number" }, duration(took)),
      h("td", { class: "number" }, String(entry.attempt)),
      h("td", { class: "error-text" }, entry.error ?? ""),
      h("td", {}, value("output", entry.output)));
  });
  return h("table", { class: "timeline" },
    h("thead", {}, h("tr", {}, ["#", "Node", "Committed at", "Since previous", "Attempt", "Error", "Output"]
      .map((title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows));
}

function parsePayload(text) {
  if (!text.trim()) return { error: "Enter a JSON value (null for none)." };
  try {
    return { payload: JSON.parse(text) };
  } catch (error) {
    return { error: `Not valid JSON: ${error.message}` };
  }
}

/** Draws run `runId` into `root` and keeps it fresh; returns what stops it. */
export function runView(root, runId, { fail, clear, say }) {
  let stopped = false;
  let timer = null;
  let delay = FIRST_DELAY_MS;
  let run = null;
  let graph = null;
  let timeline = [];
  let draft = "{}";
  let actionsKey = null;
  let focus = null; // the node whose results the timeline shows (null: every node's)

  const head = h("header", { class: "run-head" }, h("h1", {}, "Run ", h("code", {}, runId)),
    h("a", { href: "#/" }, "← all runs"));
  const factsBox = h("section", { class: "facts-box" });
  const pendingBox = h("div");
  const graphBox = h("section", { class: "graph-box" });
  const actionsBox = h("section", { class: "actions" });
  const timelineBox = h("section", { class: "timeline-box" });
  const choose = (event) => {
    const picked = event.target.closest("[data-node]");
    if (!picked || (event.type === "keydown" && event.key !== "Enter")) return;
    focus = focus === picked.dataset.node ? null : picked.dataset.node;
    render();
  };
  graphBox.addEventListener("click", choose);
  graphBox.addEventListener("keydown", choose);
  const refresh = h("p", { class: "refresh", id: "refresh" });
  show(root, head, h("p", { class: "loading" }, "Loading…"));

  async function readTimeline() {
    for (;;) {
      const after = timeline.length ? timeline[timeline.length - 1].seq : -1;
      const page = await getRun(runId, { after, limit: TIMELINE_PAGE });
      timeline = timeline.concat(page.timeline);
      if (page.timeline.length < TIMELINE_PAGE || timeline.length >= MAX_TIMELINE) return page;
    }
  }

  function actions() {
    if (FINISHED.has(run.status)) {
      return [h("h2", {}, "Actions"), h("p", { class: "muted" }, `The run is ${run.status}: nothing left to do.`)];
    }
    const parts = [h("h2", {}, "Actions")];
    if (run.status === "paused") {
      const error = h("p", { class: "field-error", id: "resume-error", role: "status" });
      const input = h("textarea", {
        id: "resume-payload", name: "payload", rows: 4, spellcheck: "false",
        "aria-describedby": "resume-error",
      });
      input.value = draft;
      const button = h("button", { type: "submit", id: "resume" }, "Resume");
      const check = () => {
        draft = input.value;
        const parsed = parsePayload(input.value);
        error.textContent = parsed.error || "";
        input.setAttribute("aria-invalid", parsed.error ? "true" : "false");
        button.disabled = Boolean(parsed.error);
        return parsed;
      };
      input.addEventListener("input", check);
      check();
      parts.push(h("form", {
        class: "resume",
        onsubmit: async (event) => {
          event.preventDefault();
          const parsed = check();
          if (parsed.error) return;
          button.disabled = true;
          try {
            await resumeRun(runId, parsed.payload, run.version);
            say(`Resumed run ${runId}.`);
            draft = "{}";
            poll(true);
          } catch (failure) {
            error.textContent = failure instanceof ApiError ? failure.explanation : String(failure);
            button.disabled = false;
          }
        },
      }, h("label", { for: "resume-payload" }, `Resume node ${run.currentNodeId} with this JSON payload`),
      input, error, button));
    }
    const reason = h("input", { id: "cancel-reason", name: "reason", placeholder: "reason (optional)" });
    const confirm = h("button", { type: "submit", id: "cancel-confirm", class: "danger" }, "Yes, cancel the run");
    const confirmation = h("form", {
      class: "cancel-confirm",
      hidden: true,
      onsubmit: async (event) => {
        event.preventDefault();
        confirm.disabled = true;
        try {
          await cancelRun(runId, reason.value.trim());
          say(`Cancelled run ${runId}.`);
          poll(true);
        } catch (failure) {
          fail(failure);
          confirm.disabled = false;
        }
      },
    }, h("label", { for: "cancel-reason" }, "Cancel: the run fails and no step of it runs again."),
    reason, confirm,
    h("button", { type: "button", onclick: () => { confirmation.hidden = true; } }, "Keep it"));
    parts.push(h("div", { class: "cancel" },
      h("button", { type: "button", id: "cancel", class: "danger", onclick: () => { confirmation.hidden = false; reason.focus(); } },
        "Cancel run…"), confirmation));
    return parts;
  }

  function render() {
    show(factsBox, facts(run, timeline));
    show(pendingBox, pending(run));
    show(graphBox, h("h2", {}, "Graph"), legend(),
      h("div", { class: "graph-scroll" }, drawGraph(graph, nodeStates(run, timeline))));
    const key = `${run.status}:${run.version}`;
    if (key !== actionsKey) {
      actionsKey = key;
      show(actionsBox, actions());
    }
    const shown = focus === null ? timeline : timeline.filter((entry) => entry.nodeId === focus);
    show(timelineBox, focus === null
      ? h("h2", {}, "Timeline")
      : h("h2", {}, `Timeline of node ${focus} `,
        h("button", { type: "button", onclick: () => { focus = null; render(); } }, "Show every node")),
    timelineTable(run, shown));
    const finished = FINISHED.has(run.status);
    show(refresh, finished
      ? `Finished: not refreshing. Read at ${iso(Date.now())}.`
      : `Refreshing while the run is not finished (next in ${duration(delay)}). Read at ${iso(Date.now())}.`);
    if (!root.contains(factsBox)) {
      show(root, head, refresh, factsBox, pendingBox, graphBox, actionsBox, timelineBox);
    }
  }

  async function poll(changed = false) {
    if (stopped) return;
    window.clearTimeout(timer);
    if (changed) delay = FIRST_DELAY_MS;
    try {
      const before = run ? run.version : null;
      const latest = await readTimeline();
      graph ||= await getGraph(runId);
      if (stopped) return;
      const { timeline: _, ...fresh } = latest;
      run = fresh;
      delay = before === null || run.version !== before ? FIRST_DELAY_MS : Math.min(delay * 2, MAX_DELAY_MS);
      clear();
      render();
    } catch (failure) {
      if (stopped) return;
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      fail(failure);
      if (failure instanceof ApiError && failure.status === 404) return;
    }
    if (!stopped && !(run && FINISHED.has(run.status))) timer = window.setTimeout(poll, delay);
  }

  poll();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
