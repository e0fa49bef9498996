// One run: its graph coloured by state, its pending retry or timer, its timeline, and what a
// user may do with it (resume a paused run with a JSON payload, cancel one not finished).
// While the run is not finished the page polls it (one read at a time), backing off while
// nothing changes. A read draws only what changed: the graph when a node's state or visits
// did, the timeline's rows of new results (at most ROWS drawn, "Show older" pages through the
// rest), the actions when what they offer did (a reason or payload being typed stays). The
// page holds at most MAX_TIMELINE results, the latest. A run started by another names it
// (a link to its page); a run that started child runs lists them, CHILD_PAGE indices at a
// time ("Show more child runs" reads the next), read again with the run on every refresh.

import { ApiError, cancelRun, getGraph, getRun, listChildren, resumeRun } from "./api.js";
import { h, show } from "./dom.js";
import { FINISHED, duration, iso, json, relative } from "./format.js";
import { STATES, drawGraph } from "./graph.js";
import { statusBadge } from "./runs.js";

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
const TIMELINE_PAGE = 1000;
/** The most results the page holds: past it, the oldest are dropped (the latest are kept). */
const MAX_TIMELINE = 20_000;
/** The most result JSON the page holds (characters): 20,000 results of 256 KiB would not fit a tab. */
const MAX_TIMELINE_BYTES = 64 * 1024 * 1024;

/** An entry's size as JSON, measured once. */
function sizeOf(entry) {
  if (entry.bytes === undefined) {
    Object.defineProperty(entry, "bytes", { value: JSON.stringify(entry).length, enumerable: false });
  }
  return entry.bytes;
}
/** The most timeline rows drawn at once; "Show older" pages through the rest of what is held. */
const ROWS = 500;
/** The child runs read per request: the first page listed, and each "Show more" adds one. */
const CHILD_PAGE = 100;

/** Whether `run` is paused until its child runs have ended (no caller may resume it). */
function waitsForChildren(run) {
  return run.status === "paused" && Boolean(run.children && run.children.waiting);
}

const runLink = (id) => h("a", { href: `#/runs/${encodeURIComponent(id)}` }, id);

/** Each node's state, visits and note, from the run's head and how often each node ran. */
export function nodeStates(run, visits) {
  const states = new Map();
  for (const [nodeId, count] of visits) states.set(nodeId, { state: "done", visits: count });
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
    else if (waitsForChildren(run)) info.detail = `waiting for its ${run.children.count} child runs`;
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

function facts(run, held) {
  const snapshot = run.snapshot || {};
  const rows = [
    ["Workflow", run.workflow],
    ["Status", statusBadge(run.status)],
    ["Current node", run.currentNodeId ?? "—"],
    ["Created", h("time", {}, iso(run.createdAt))],
    ["Updated", h("time", {}, iso(run.updatedAt))],
    ["Elapsed", duration(run.updatedAt - run.createdAt)],
    ["Execution time", duration(snapshot.totalExecutionTime)],
    ["Results", `${run.resultCount}${held < run.resultCount ? ` (the latest ${held} held)` : ""}`],
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
  } else if (waitsForChildren(run)) {
    lines.push(h("p", { class: "waiting" }, `Waiting at node ${run.currentNodeId} for its ` +
      `${run.children.count} child runs: it goes on once they have ended.`));
  } else if (run.status === "paused") {
    lines.push(h("p", { class: "waiting" },
      `Paused at node ${run.currentNodeId}: it runs again once resumed with a payload.`));
  }
  return lines.length ? h("section", { class: "pending" }, h("h2", {}, "Pending"), lines) : null;
}

/** "Started by run X, node N, item i", the run a link to its page (null: a caller started it). */
function parentLine(run) {
  const parent = run.parent;
  if (!parent) return null;
  return ["Started by run ", runLink(parent.runId), `, node ${parent.node}, item ${parent.index}.`];
}

/** What started the child runs, how many, and how they ended (once joined). */
function childrenSummary(children, listed, more) {
  const how = [children.kind, children.concurrency && `at most ${children.concurrency} at a time`,
    children.failure && `on failure: ${children.failure}`].filter(Boolean).join(", ");
  let state = "the run no longer waits for them.";
  if (children.waiting) state = "the run waits for them.";
  else if (children.ended !== null) state = `joined: ${children.ended} ended, ${children.failed ?? 0} failed.`;
  const unlisted = !more && listed < children.count ? " (the others have not started)" : "";
  return `${children.count} child run${children.count === 1 ? "" : "s"} of node ${children.node ?? "?"}` +
    `${how ? ` (${how})` : ""}; ${state} ${listed} listed${more ? " so far" : ""}${unlisted}.`;
}

function childRow(child) {
  return h("tr", { "data-index": child.index, "data-run": child.runId },
    h("td", { class: "number" }, String(child.index)),
    h("td", {}, runLink(child.runId)),
    h("td", {}, statusBadge(child.status)),
    h("td", {}, child.node ?? "—"),
    h("td", {}, h("time", {}, iso(child.updatedAt))));
}

function value(label, data) {
  if (data === undefined || data === null) return h("span", { class: "muted" }, "—");
  const compact = JSON.stringify(data, null, 1).replace(/\n */g, " ");
  if (compact.length <= 60) return h("code", { class: label }, compact);
  return h("details", { class: label }, h("summary", {}, `${compact.slice(0, 56)}…`),
    h("pre", {}, json(data)));
}

/** One timeline row; `entry.took` is the time since the result before it. */
function timelineRow(entry) {
  return h("tr", { "data-seq": entry.seq, "data-node": entry.nodeId, class: entry.error ? "failed" : "" },
    h("td", { class: "number" }, String(entry.seq)),
    h("td", {}, entry.nodeId),
    h("td", {}, h("time", {}, iso(entry.timestamp))),
    h("td", { class: "number" }, duration(entry.took)),
    h("td", { class: "number" }, String(entry.attempt)),
    h("td", { class: "error-text" }, entry.error ?? ""),
    h("td", {}, value("output", entry.output)));
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
  let run0 = null; // the first head read (when the run was created)
  let graph = null;
  let timeline = []; // the results held: the latest MAX_TIMELINE read, oldest first
  let lastSeq = -1; // the last result read (results are numbered from 0)
  let heldBytes = 0; // the size of the held results as JSON (see sizeOf)
  let lastTimestamp = null; // when that result was committed
  const visits = new Map(); // how many results of each node were read
  let graphKey = null;
  let actionsKey = null;
  let focus = null; // the node whose results the timeline shows (null: every node's)
  let upto = null; // the last result the rows show (null: the latest)
  let kids = null; // the child runs read: { listed, next } (null: the run started none)
  let kidsKey = null; // what they were at the read before (a change resets the backoff)
  let drawnKids = null; // what the child runs' rows show
  let childPages = 1; // how many pages of child runs to read ("Show more" adds one)
  let inflight = null; // the read under way: one at a time
  let again = false; // another read was asked for while one was under way
  // What the user is typing or has opened in the actions: kept when they are rebuilt.
  let draft = "{}";
  let reasonDraft = "";
  let confirming = false;

  const head = h("header", { class: "run-head" }, h("h1", {}, "Run ", h("code", {}, runId)),
    h("a", { href: "#/" }, "← all runs"));
  const parentBox = h("p", { class: "parent-run", id: "parent-run", hidden: true });
  const kidsNote = h("p", { class: "children-note", id: "children-note" });
  const kidsBody = h("tbody", {});
  const kidsTable = h("table", { class: "children" },
    h("thead", {}, h("tr", {}, ["#", "Run", "Status", "Current node", "Updated"]
      .map((title) => h("th", { scope: "col" }, title)))),
    kidsBody);
  const more = h("button", {
    type: "button", id: "children-more",
    onclick: () => { childPages += 1; poll(true); },
  }, "Show more child runs");
  const kidsBox = h("section", { class: "children-box", hidden: true },
    h("h2", {}, "Child runs"), kidsNote, kidsTable, h("nav", { class: "paging" }, more));
  const factsBox = h("section", { class: "facts-box" });
  const pendingBox = h("div");
  const graphScroll = h("div", { class: "graph-scroll" });
  const graphBox = h("section", { class: "graph-box" }, h("h2", {}, "Graph"), legend(), graphScroll);
  const actionsBox = h("section", { class: "actions" });
  const timelineTitle = h("h2", {}, "Timeline");
  const timelineNote = h("p", { class: "timeline-note", id: "timeline-note" });
  const tbody = h("tbody", {});
  const table = h("table", { class: "timeline" },
    h("thead", {}, h("tr", {}, ["#", "Node", "Committed at", "Since previous", "Attempt", "Error", "Output"]
      .map((title) => h("th", { scope: "col" }, title)))),
    tbody);
  const empty = h("p", { class: "empty" }, "No results yet.");
  const older = h("button", { type: "button", id: "timeline-older", onclick: () => page(-1) }, "Show older");
  const newer = h("button", { type: "button", id: "timeline-newer", onclick: () => page(1) }, "Show newer");
  const latest = h("button", { type: "button", id: "timeline-latest", onclick: () => page(0) }, "Show the latest");
  const paging = h("nav", { class: "paging timeline-paging", "aria-label": "timeline pages" }, older, newer, latest);
  const timelineBox = h("section", { class: "timeline-box" }, timelineTitle, timelineNote, empty, table, paging);

  const choose = (event) => {
    const picked = event.target.closest("[data-node]");
    if (!picked || (event.type === "keydown" && event.key !== "Enter")) return;
    focus = focus === picked.dataset.node ? null : picked.dataset.node;
    upto = null;
    markFocus();
    drawRows();
  };
  graphBox.addEventListener("click", choose);
  graphBox.addEventListener("keydown", choose);
  const refresh = h("p", { class: "refresh", id: "refresh" });
  show(root, head, h("p", { class: "loading" }, "Loading…"));

  /** The held results the timeline shows (every node's, or the chosen node's). */
  const matching = () => (focus === null ? timeline : timeline.filter((entry) => entry.nodeId === focus));

  /** Keeps `entries` (read after `lastSeq`, in order): appended, the oldest past the cap dropped. */
  function hold(entries) {
    const fresh = entries.filter((entry) => entry.seq > lastSeq); // a result is never held twice
    for (const entry of fresh) {
      // The time since the result before; the first result since the run was created (unknown
      // when the results before it were not read: past the cap).
      if (lastTimestamp !== null) entry.took = entry.timestamp - lastTimestamp;
      else if (lastSeq === -1) entry.took = entry.timestamp - run0.createdAt;
      lastTimestamp = entry.timestamp;
      lastSeq = entry.seq;
      visits.set(entry.nodeId, (visits.get(entry.nodeId) || 0) + 1);
    }
    timeline.push(...fresh);
    for (const entry of fresh) heldBytes += sizeOf(entry);
    // The oldest go first past the cap on results, or on their size (the latest is kept).
    let dropped = 0;
    while (
      timeline.length - dropped > 1 &&
      (timeline.length - dropped > MAX_TIMELINE || heldBytes > MAX_TIMELINE_BYTES)
    ) {
      heldBytes -= sizeOf(timeline[dropped]);
      dropped += 1;
    }
    if (dropped) timeline = timeline.slice(dropped);
    return { fresh, dropped };
  }

  async function readTimeline() {
    const fresh = [];
    let dropped = 0;
    for (let pages = 0; ; pages += 1) {
      const page = await getRun(runId, { after: lastSeq, limit: TIMELINE_PAGE });
      run0 ||= page;
      if (lastSeq === -1 && page.resultCount > MAX_TIMELINE) {
        // More results than the page holds: read only the latest (the visits count what is read).
        lastSeq = page.resultCount - 1 - MAX_TIMELINE;
        continue;
      }
      const held = hold(page.timeline);
      fresh.push(...held.fresh);
      dropped += held.dropped;
      // A page ends early when its results are large (the server caps its bytes): the end
      // is the run's last result, not a short page.
      const atEnd = page.timeline.length === 0 || lastSeq >= page.resultCount - 1;
      if (atEnd || pages * TIMELINE_PAGE >= MAX_TIMELINE || heldBytes >= MAX_TIMELINE_BYTES) {
        return { page, fresh: fresh.slice(-MAX_TIMELINE), dropped };
      }
      // Large results: skip ahead to the latest ones that fit what the page holds.
      const perResult = heldBytes / Math.max(timeline.length, 1);
      const fitting = Math.floor((MAX_TIMELINE_BYTES - heldBytes) / Math.max(perResult, 1));
      const ahead = page.resultCount - 1 - fitting;
      if (ahead > lastSeq) {
        lastSeq = ahead;
        lastTimestamp = null; // the time since the result before is unknown past a gap
      }
    }
  }

  /** The child runs of the run's latest wait: the first `childPages` pages, by index. */
  async function readChildren() {
    const listed = [];
    let after = -1;
    let next = null;
    for (let pages = 0; pages < childPages; pages += 1) {
      const page = await listChildren(runId, { after, limit: CHILD_PAGE });
      listed.push(...page.children);
      next = page.next;
      if (next === null) break;
      after = next;
    }
    return { listed, next };
  }

  function actionsOffer() {
    if (FINISHED.has(run.status)) return `finished:${run.status}`;
    return run.status === "paused" && !waitsForChildren(run) ? `paused:${run.currentNodeId}` : "cancel";
  }

  function actions() {
    if (FINISHED.has(run.status)) {
      confirming = false;
      return [h("h2", {}, "Actions"), h("p", { class: "muted" }, `The run is ${run.status}: nothing left to do.`)];
    }
    const parts = [h("h2", {}, "Actions")];
    if (run.status === "paused" && !waitsForChildren(run)) {
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
    const reason = h("input", {
      id: "cancel-reason", name: "reason", placeholder: "reason (optional)",
      oninput: () => { reasonDraft = reason.value; },
    });
    reason.value = reasonDraft;
    const confirm = h("button", { type: "submit", id: "cancel-confirm", class: "danger" }, "Yes, cancel the run");
    const confirmation = h("form", {
      class: "cancel-confirm",
      hidden: !confirming,
      onsubmit: async (event) => {
        event.preventDefault();
        confirm.disabled = true;
        try {
          await cancelRun(runId, reason.value.trim());
          say(`Cancelled run ${runId}.`);
          confirming = false;
          reasonDraft = "";
          poll(true);
        } catch (failure) {
          fail(failure);
          confirm.disabled = false;
        }
      },
    }, h("label", { for: "cancel-reason" }, "Cancel: the run fails and no step of it runs again."),
    reason, confirm,
    h("button", { type: "button", onclick: () => { confirming = false; confirmation.hidden = true; } }, "Keep it"));
    parts.push(h("div", { class: "cancel" },
      h("button", {
        type: "button", id: "cancel", class: "danger",
        onclick: () => { confirming = true; confirmation.hidden = false; reason.focus(); },
      }, "Cancel run…"), confirmation));
    return parts;
  }

  function drawGraphIfChanged() {
    const states = nodeStates(run, visits);
    const key = JSON.stringify([...states]);
    if (key === graphKey) return;
    graphKey = key;
    show(graphScroll, drawGraph(graph, states));
    markFocus();
  }

  function markFocus() {
    for (const element of graphScroll.querySelectorAll("[data-node]")) {
      element.setAttribute("aria-pressed", element.dataset.node === focus ? "true" : "false");
    }
    if (focus === null) {
      show(timelineTitle, "Timeline");
    } else {
      show(timelineTitle, `Timeline of node ${focus} `,
        h("button", { type: "button", onclick: () => { focus = null; upto = null; markFocus(); drawRows(); } },
          "Show every node"));
    }
  }

  /** The rows to show: at most ROWS of `shown`, ending at `upto` (or the latest). */
  function window_(shown) {
    let end = shown.length;
    if (upto !== null) {
      end = 0;
      while (end < shown.length && shown[end].seq <= upto) end += 1;
    }
    const start = Math.max(0, end - ROWS);
    return { start, end: Math.min(shown.length, Math.max(end, start + ROWS)) }; // the oldest page: full
  }

  /** Moves the rows a page older (-1), newer (1), or to the latest (0). */
  function page(step) {
    const shown = matching();
    const { start, end } = window_(shown);
    if (step < 0 && start > 0) upto = shown[start - 1].seq;
    else if (step > 0 && end + ROWS < shown.length) upto = shown[end + ROWS - 1].seq;
    else upto = null;
    drawRows();
  }

  function describe(shown, start, end) {
    const held = timeline.length;
    const parts = [];
    if (run && held < run.resultCount) parts.push(`Showing the latest ${held} of ${run.resultCount} results.`);
    if (shown.length > end - start) {
      parts.push(`Rows ${start + 1} to ${end} of ${shown.length}${focus === null ? "" : ` results of node ${focus}`} held` +
        (upto === null ? " (the latest)." : "."));
    }
    timelineNote.textContent = parts.join(" ");
    timelineNote.hidden = !parts.length;
    older.disabled = start === 0;
    newer.disabled = upto === null;
    latest.disabled = upto === null;
    paging.hidden = shown.length <= ROWS;
    empty.textContent = focus === null || !timeline.length ? "No results yet." : `No results of node ${focus} held.`;
    empty.hidden = end > start;
    table.hidden = end === start;
  }

  /** Draws the rows of the timeline from scratch (a node chosen, a page turned). */
  function drawRows() {
    const shown = matching();
    const { start, end } = window_(shown);
    show(tbody, shown.slice(start, end).map(timelineRow));
    describe(shown, start, end);
  }

  /** Adds the rows of results just read, drops those past the page's bounds. */
  function addRows(fresh, dropped) {
    const shown = matching();
    const { start, end } = window_(shown);
    const first = tbody.firstElementChild;
    const oldestShown = first ? Number(first.dataset.seq) : null;
    if (dropped && oldestShown !== null && (!shown.length || shown[start].seq !== oldestShown) && upto !== null) {
      drawRows(); // the page looked at was dropped: draw what is held now
      return;
    }
    if (upto === null) {
      const rows = fresh.filter((entry) => focus === null || entry.nodeId === focus).slice(-ROWS);
      tbody.append(...rows.map(timelineRow));
      while (tbody.childElementCount > end - start) tbody.firstElementChild.remove();
    }
    describe(shown, start, end);
  }

  /** The child runs' section: shown while the run has some, its rows drawn when they changed. */
  function drawChildren() {
    kidsBox.hidden = !run.children || !kids;
    if (kidsBox.hidden) return;
    kidsNote.textContent = childrenSummary(run.children, kids.listed.length, kids.next !== null);
    const key = JSON.stringify(kids.listed);
    if (key !== drawnKids) {
      drawnKids = key;
      show(kidsBody, kids.listed.map(childRow));
    }
    kidsTable.hidden = !kids.listed.length;
    more.hidden = kids.next === null;
  }

  function render(fresh, dropped) {
    if (run.parent && !parentBox.hasChildNodes()) show(parentBox, parentLine(run)); // a run's parent never changes
    parentBox.hidden = !run.parent;
    show(factsBox, facts(run, timeline.length));
    show(pendingBox, pending(run));
    drawGraphIfChanged();
    const offer = actionsOffer();
    if (offer !== actionsKey) {
      actionsKey = offer;
      const typing = actionsBox.contains(document.activeElement) ? document.activeElement.id : null;
      show(actionsBox, actions());
      if (typing) document.getElementById(typing)?.focus();
    }
    drawChildren();
    addRows(fresh, dropped);
    const finished = FINISHED.has(run.status);
    show(refresh, finished
      ? `Finished: not refreshing. Read at ${iso(Date.now())}.`
      : `Refreshing while the run is not finished (next in ${duration(delay)}). Read at ${iso(Date.now())}.`);
    if (!root.contains(factsBox)) {
      show(root, head, parentBox, refresh, factsBox, pendingBox, graphBox, kidsBox, actionsBox, timelineBox);
    }
  }

  /** Reads the run once more; one read at a time: asked during one, it follows it. */
  function poll(changed = false) {
    if (stopped) return;
    if (changed) delay = FIRST_DELAY_MS;
    if (inflight) {
      again = true;
      return;
    }
    window.clearTimeout(timer);
    inflight = read().finally(() => {
      inflight = null;
      if (again && !stopped) {
        again = false;
        poll();
      }
    });
  }

  async function read() {
    try {
      const before = run ? run.version : null;
      const { page: latestPage, fresh, dropped } = await readTimeline();
      graph ||= await getGraph(runId);
      // Children change without their parent: their page is read on every refresh.
      const readKids = latestPage.children ? await readChildren() : null;
      if (stopped) return;
      const { timeline: _, ...head_ } = latestPage;
      run = head_;
      kids = readKids;
      const key = JSON.stringify(kids);
      const changed = before === null || run.version !== before || key !== kidsKey;
      kidsKey = key;
      delay = changed ? FIRST_DELAY_MS : Math.min(delay * 2, MAX_DELAY_MS);
      clear();
      render(fresh, dropped);
    } catch (failure) {
      if (stopped) return;
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      fail(failure);
      if (failure instanceof ApiError && failure.status === 404) return;
    }
    if (!stopped && !again && !(run && FINISHED.has(run.status))) {
      window.clearTimeout(timer);
      timer = window.setTimeout(poll, delay);
    }
  }

  poll();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
