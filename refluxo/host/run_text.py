"""Runs as readable text: what ``status``, ``list``, ``run`` and ``resume`` print.

Every function takes the API's JSON views (``GET /runs/{id}``, ``GET /runs``), whichever
client read them, so the local database and a server print the same. Times are ISO with
their distance from now (:mod:`refluxo.host.times`), never epoch milliseconds; a paused run
says what moves it on (a ready-to-paste ``refluxo resume`` line, or the time its timer
fires and what must be running to fire it). ``--json`` prints the views themselves.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from refluxo.host.table import one_line, table
from refluxo.host.times import iso, span, when

TIMER_FIRED_BY = "`refluxo serve` (or the deployed runtime) must be running to fire it"
"""What a timed pause needs: a scheduler. Said whenever the command stops before it fires."""


def metadata(view: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = (view.get("snapshot") or {}).get("metadata") or {}
    return meta if isinstance(meta, Mapping) else {}


def retry_state(view: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pending retry (``nodeId``, ``attempts``, ``nextRetryAt``) of a run in ``error``."""
    state = (view.get("snapshot") or {}).get("retryState")
    return state if isinstance(state, Mapping) and view.get("status") == "error" else None


def resume_at(view: Mapping[str, Any]) -> float | None:
    """When a paused run's timer fires (epoch ms), or None if only a resume moves it."""
    at = metadata(view).get("resumeAt")
    return float(at) if view.get("status") == "paused" and isinstance(at, int | float) else None


def waiting_children(view: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What a paused run waits for when it waits for child runs (``childRuns``), or None."""
    marker = metadata(view).get("childRuns")
    if view.get("status") == "paused" and isinstance(marker, Mapping) and marker.get("waiting"):
        return marker
    return None


def due_at(view: Mapping[str, Any]) -> float | None:
    """When the run's next step is due by a timer or a retry (epoch ms), if it waits on one."""
    retry = retry_state(view)
    if retry is not None and isinstance(retry.get("nextRetryAt"), int | float):
        return float(retry["nextRetryAt"])
    return resume_at(view)


def resume_command(run_id: str, payload: str = "{}") -> str:
    """A ``refluxo resume`` line a shell runs as it is (the run id quoted if it must be)."""
    return f"refluxo resume {shlex.quote(run_id)} --payload {shlex.quote(payload)}"


def describe(view: Mapping[str, Any], now: float | None = None) -> str:
    """The run's state in one line: ``paused at 'review': waiting for a resume``."""
    status = view["status"]
    node = view.get("currentNodeId")
    if status == "paused":
        children = waiting_children(view)
        if children is not None:
            return f"waiting at {node!r} for its {children.get('count')} child runs"
        at = resume_at(view)
        if at is not None:
            return f"paused at {node!r} until {when(at, now)} (a timer)"
        return f"paused at {node!r}: waiting for a resume"
    if status == "failed":
        reason = metadata(view).get("failedReason")
        how = " (cancelled)" if metadata(view).get("cancelledAt") else ""
        where = f" at {node!r}" if node else ""
        return f"failed{how}{where}" + (f": {reason}" if reason else "")
    if status == "error":
        retry = retry_state(view) or {}
        attempts = retry.get("attempts")
        next_at = retry.get("nextRetryAt")
        line = f"retrying {retry.get('nodeId', node)!r}"
        if attempts:
            line += f" after {attempts} failed {'attempt' if attempts == 1 else 'attempts'}"
        if isinstance(next_at, int | float):
            line += f"; next attempt at {when(next_at, now)}"
        return line
    if status == "active":
        return f"active at {node!r}"
    return str(status)


def what_next(view: Mapping[str, Any], *, server: bool) -> list[str]:
    """What moves a run on that has not ended: the resume line, or what fires its timer.

    ``server``: the command talks to a server (``--url``), whose scheduler fires timers
    and retries; otherwise they need ``refluxo serve`` running on the database.
    """
    status = view["status"]
    run_id = view["runId"]
    asked = []
    if waiting_children(view) is not None:
        held = (
            "if a child is paused for a resume, it holds the run: resume that child "
            "(the inspector lists them)"
        )
        if server:
            return [
                f"the server runs its child runs; follow it with: refluxo status {run_id}",
                held,
            ]
        return [f"its child runs go on while {TIMER_FIRED_BY.split(' must')[0]} runs", held]
    if status == "paused" and "pausedWith" in metadata(view):
        # What the node paused with: the question the resume answers.
        shown = json.dumps(metadata(view)["pausedWith"], ensure_ascii=False)
        asked = [f"it paused with: {one_line(shown, 200)}"]
    if status == "paused" and resume_at(view) is None:
        return [*asked, f"resume it with: {resume_command(run_id)}"]
    if status == "paused" or status == "error":
        what = "its timer" if status == "paused" else "the retry"
        lines = []
        if server:
            lines.append(f"the server fires {what}; follow it with: refluxo status {run_id}")
        else:
            lines.append(f"{what} is due then: {TIMER_FIRED_BY}")
        if status == "paused":
            lines.append(f"or end the wait now with: {resume_command(run_id)}")
        return [*asked, *lines]
    return []


def _output(entry: Mapping[str, Any]) -> str:
    if entry.get("error"):
        return "ERROR " + one_line(str(entry["error"]), 70)
    return one_line(json.dumps(entry.get("output"), ensure_ascii=False), 70)


def timeline_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """The results as a table: position, node, attempt, ISO time, time since the previous,
    and the output (or the error), each cut to one line."""
    rows = []
    previous: float | None = None
    for entry in entries:
        stamp = entry.get("timestamp")
        after = span((stamp - previous) / 1000) if previous is not None and stamp else "-"
        previous = stamp if isinstance(stamp, int | float) else previous
        rows.append(
            [
                str(entry.get("seq", "")),
                str(entry.get("nodeId", "")),
                str(entry.get("attempt", "")),
                iso(stamp) if isinstance(stamp, int | float) else "-",
                after,
                _output(entry),
            ]
        )
    return table(["SEQ", "NODE", "ATTEMPT", "TIME", "AFTER", "OUTPUT"], rows)


def status_text(view: Mapping[str, Any], *, server: bool, now: float | None = None) -> str:
    """``refluxo status``: the run's summary, what moves it on, and its timeline."""
    version = str(view.get("definitionVersion") or "")[:12]
    lines = [
        f"run       {view['runId']}",
        f"workflow  {view['workflow']}" + (f" (definition {version})" if version else ""),
        f"status    {describe(view, now)}",
        *(f"          {line}" for line in what_next(view, server=server)),
    ]
    if isinstance(view.get("createdAt"), int | float):
        lines.append(f"started   {when(view['createdAt'], now)}")
    if isinstance(view.get("updatedAt"), int | float):
        lines.append(f"updated   {when(view['updatedAt'], now)}")
    lines += _links(view)
    count = view.get("resultCount", len(view.get("timeline", [])))
    lines.append(f"results   {count} (version {view.get('version')})")
    entries = view.get("timeline") or []
    if entries:
        lines += ["", timeline_table(entries)]
        if count > len(entries):
            last = entries[-1].get("seq", len(entries) - 1)
            lines.append(
                f"(the first {len(entries)} of {count} results, one page of the timeline; the "
                f"API pages on: GET /runs/{view['runId']}?timelineAfter={last})"
            )
    return "\n".join(lines)


def _links(view: Mapping[str, Any]) -> list[str]:
    """The run that started this one, and the child runs this one started last."""
    lines = []
    parent = view.get("parent")
    if isinstance(parent, Mapping):
        lines.append(
            f"parent    {parent.get('runId')} (node {parent.get('node')}, "
            f"item {parent.get('index')})"
        )
    children = view.get("children")
    if isinstance(children, Mapping):
        count = children.get("count")
        started = f"{count} child runs of {children.get('kind')} node {children.get('node')}"
        if children.get("waiting"):
            state = f"waiting for them (at most {children.get('concurrency')} at once)"
        elif children.get("cancelled"):
            state = "cancelled with the run"
        else:
            state = f"{children.get('ended')} ended, {children.get('failed')} failed"
        lines.append(f"children  {started}: {state}")
        ids = [str(run_id) for run_id in children.get("runIds") or []]
        if ids:
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 or len(ids) != count else "")
            lines.append(f"          {shown}")
    return lines


def runs_table(runs: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """``refluxo list``: one run a line under a header, newest first."""
    rows = [
        [
            str(run["runId"]),
            str(run["workflow"]),
            str(run["status"]),
            str(run.get("currentNodeId") or "-"),
            str(run.get("resultCount", "")),
            when(run["updatedAt"], now) if isinstance(run.get("updatedAt"), int | float) else "-",
        ]
        for run in runs
    ]
    return table(["RUN", "WORKFLOW", "STATUS", "NODE", "RESULTS", "UPDATED"], rows)


def entry_line(entry: Mapping[str, Any]) -> str:
    """A result as ``run`` prints it while following: node, then output or error."""
    node = str(entry.get("nodeId", ""))
    if entry.get("error"):
        return f"  {node:<14} attempt {entry.get('attempt')} failed: {entry['error']}"
    return f"  {node:<14} -> {one_line(json.dumps(entry.get('output'), ensure_ascii=False), 400)}"


__all__ = [
    "TIMER_FIRED_BY",
    "describe",
    "due_at",
    "entry_line",
    "resume_at",
    "resume_command",
    "retry_state",
    "runs_table",
    "status_text",
    "timeline_table",
    "waiting_children",
    "what_next",
]
