// The runs list: newest first, by status (the API filters) and by workflow (the page filters
// the pages it reads), one page at a time, and a run found by its id.

import { listRuns, listWorkflows } from "./api.js";
import { h, show } from "./dom.js";
import { iso } from "./format.js";

const STATUSES = ["active", "paused", "error", "completed", "failed"];
const PAGE = 50;
const MAX_PAGES_READ = 20;

/** The list's state as the address keeps it: `#/?status=…&workflow=…&cursor=…&back=…`. */
export function listAddress({ status = "", workflow = "", cursor = "", back = [] } = {}) {
  const query = new URLSearchParams();
  if (status) query.set("status", status);
  if (workflow) query.set("workflow", workflow);
  if (cursor) query.set("cursor", cursor);
  for (const previous of back) query.append("back", previous);
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

/** Runs of `workflow` (any when empty): pages are read until one page's worth is found. */
async function readPage(status, workflow, cursor) {
  const runs = [];
  let next = cursor || undefined;
  for (let read = 0; read < MAX_PAGES_READ; read += 1) {
    const page = await listRuns({ status, limit: PAGE, cursor: next });
    runs.push(...page.runs.filter((run) => !workflow || run.workflow === workflow));
    next = page.nextCursor || undefined;
    if (!next || runs.length >= PAGE) break;
  }
  return { runs, next };
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

function filters(state, workflows) {
  const status = h("select", { id: "filter-status", name: "status" },
    h("option", { value: "" }, "any status"),
    STATUSES.map((value) => h("option", { value, selected: value === state.status }, value)));
  const names = new Set(workflows);
  if (state.workflow) names.add(state.workflow);
  const workflow = h("select", { id: "filter-workflow", name: "workflow" },
    h("option", { value: "" }, "any workflow"),
    [...names].sort().map((value) =>
      h("option", { value, selected: value === state.workflow }, value)));
  const apply = () => {
    window.location.hash = listAddress({ status: status.value, workflow: workflow.value });
  };
  status.addEventListener("change", apply);
  workflow.addEventListener("change", apply);
  const id = h("input", {
    id: "find-run", name: "run", placeholder: "run id", spellcheck: "false", required: true,
  });
  const find = h("form", {
    class: "find",
    onsubmit: (event) => {
      event.preventDefault();
      const value = id.value.trim();
      if (value) window.location.hash = `#/runs/${encodeURIComponent(value)}`;
    },
  }, h("label", { for: "find-run" }, "Find a run"), id, h("button", { type: "submit" }, "Open"));
  return h("div", { class: "filters" },
    h("label", { for: "filter-status" }, "Status"), status,
    h("label", { for: "filter-workflow" }, "Workflow"), workflow,
    h("button", { type: "button", onclick: () => window.dispatchEvent(new Event("hashchange")) },
      "Refresh"),
    find);
}

function table(runs) {
  if (!runs.length) return h("p", { class: "empty" }, "No runs match.");
  return h("table", { class: "runs" },
    h("thead", {}, h("tr", {},
      ["Run", "Workflow", "Status", "Current node", "Created", "Updated", "Results"].map(
        (title) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, runs.map((run) => h("tr", { "data-run": run.runId },
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.runId)}` }, run.runId)),
      h("td", {}, run.workflow),
      h("td", {}, statusBadge(run.status)),
      h("td", {}, run.currentNodeId ?? "—"),
      h("td", {}, h("time", {}, iso(run.createdAt))),
      h("td", {}, h("time", {}, iso(run.updatedAt))),
      h("td", { class: "number" }, String(run.resultCount))))));
}

/**
 * Draws the list into `root` for the address's `query`; reports errors with `fail`.
 * Returns a stop function: a list still loading when the user moves to another view must
 * not draw over that view when its reads come back.
 */
export function runsView(root, query, { fail }) {
  let stopped = false;
  drawList(root, query, fail, () => stopped);
  return () => {
    stopped = true;
  };
}

async function drawList(root, query, fail, isStopped) {
  const state = {
    status: query.get("status") || "",
    workflow: query.get("workflow") || "",
    cursor: query.get("cursor") || "",
    back: query.getAll("back"),
  };
  show(root, h("h1", {}, "Runs"), h("p", { class: "loading" }, "Loading…"));
  let workflows = [];
  try {
    workflows = (await listWorkflows()).workflows.map((workflow) => workflow.name);
    const { runs, next } = await readPage(state.status, state.workflow, state.cursor);
    if (isStopped()) return;
    const paging = h("nav", { class: "paging" });
    if (state.cursor) {
      const back = state.back.slice(0, -1);
      const previous = state.back.at(-1) || "";
      paging.append(h("a", { href: listAddress({ ...state, cursor: previous, back }) },
        "← Newer"));
    }
    if (next) {
      const back = [...state.back, state.cursor];
      paging.append(h("a", { href: listAddress({ ...state, cursor: next, back }) }, "Older →"));
    }
    show(root, h("h1", {}, "Runs"), filters(state, workflows),
      h("p", { class: "hint" }, "Newest first."), table(runs), paging);
  } catch (error) {
    if (isStopped()) return;
    show(root, h("h1", {}, "Runs"), filters(state, workflows));
    fail(error);
  }
}
