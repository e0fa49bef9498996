"""The run views of :mod:`refluxo.api.models`, built from stored wire JSON without pydantic.

``refluxo status`` prints a run as the API shows it. Going through the response models
would load pydantic and the models of the engine, more than the rest of the command
costs; the stored head and results are already wire JSON, so these functions only pick
their fields in the views' order and leave out what the views leave out (a ``null``
``error``, ``lastStartedAt``, ``totalExecutionTime`` or ``retryState``, and the head's
empty context). The same dict as ``RunDetailView.of_run(...).model_dump(mode="json",
by_alias=True)``: tests/cli/test_stored_runs.py compares both on runs in every state.

The run's links to other runs (``parent``, ``children``) are read from its metadata here,
for both views: :func:`parent_view` and :func:`children_view`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeGuard

from refluxo.metadata import CHILD_RUNS, PARENT_RUN
from refluxo.runtime.ids import RUN_ID_PATTERN
from refluxo.runtime.stored import StoredResult, StoredRun

LISTED_CHILDREN: Final = 100
"""The most child run ids a run's view lists (``GET /runs/{id}/children`` pages them all)."""

_OMITTED_WHEN_NULL = ("lastStartedAt", "totalExecutionTime")


def snapshot_view(head: Mapping[str, Any]) -> dict[str, Any]:
    """A stored head as :class:`~refluxo.model.Snapshot` dumps it, without its context."""
    view: dict[str, Any] = {
        "workflowId": head["workflowId"],
        "status": head["status"],
        "currentNodeId": head.get("currentNodeId"),
        "version": head.get("version", 0),
        "metadata": head.get("metadata", {}),
    }
    for key in _OMITTED_WHEN_NULL:
        if head.get(key) is not None:
            view[key] = head[key]
    retry = head.get("retryState")
    if retry is not None:
        view["retryState"] = {"nodeId": retry["nodeId"], "attempts": retry["attempts"]}
        if retry.get("nextRetryAt") is not None:
            view["retryState"]["nextRetryAt"] = retry["nextRetryAt"]
    return view


def run_view(run: StoredRun) -> dict[str, Any]:
    """The run as :class:`~refluxo.api.models.RunView` shows it."""
    snapshot = snapshot_view(run.head)
    return {
        "runId": run.run_id,
        "workflow": run.workflow,
        "definitionVersion": run.definition_version,
        "status": snapshot["status"],
        "version": snapshot["version"],
        "currentNodeId": snapshot["currentNodeId"],
        "createdAt": run.created_at,
        "updatedAt": run.updated_at,
        "resultCount": run.result_count,
        "snapshot": snapshot,
    }


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def child_id(parent_id: str, version: int, index: int) -> str:
    """The id of child ``index`` of the wait of ``parent_id`` at ``version``: what
    :func:`refluxo.runtime.links.child_run_id` derives (that module loads the engine's
    models; tests/api/test_child_runs.py checks that both agree)."""
    readable = f"{parent_id}.{version}.{index}"
    if RUN_ID_PATTERN.fullmatch(readable):
        return readable
    key = f"{parent_id}\x00{version}\x00{index}"
    return "child-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def child_wait(metadata: Mapping[str, Any]) -> tuple[int, int] | None:
    """The version and child count of a run's latest wait for child runs, or None (it never
    started any, or its ``childRuns`` is not one the runtime writes)."""
    marker = metadata.get(CHILD_RUNS)
    if not isinstance(marker, Mapping):
        return None
    version, count = marker.get("version"), marker.get("count")
    if _whole(version) and _whole(count) and version >= 0 and count >= 0:
        return version, count
    return None


def parent_view(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run that started this one (``{"runId", "node", "index"}``), or None."""
    link = metadata.get(PARENT_RUN)
    if not isinstance(link, Mapping):
        return None
    run_id, node, index = link.get("runId"), link.get("node"), link.get("index")
    if not (isinstance(run_id, str) and isinstance(node, str) and _whole(index)):
        return None
    return {"runId": run_id, "node": node, "index": index}


def children_view(run_id: str, status: str, metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The child runs of the run's latest wait, or None: what started them, how many, how
    they end, whether the run still waits for them (paused: a run cancelled while waiting
    waits no more), and the ids of the first :data:`LISTED_CHILDREN` (derived from the wait:
    a child not started yet has none yet)."""
    wait = child_wait(metadata)
    if wait is None:
        return None
    version, count = wait
    marker: Mapping[str, Any] = metadata[CHILD_RUNS]
    node, kind = marker.get("node"), marker.get("kind")
    concurrency, failure = marker.get("concurrency"), marker.get("failure")
    ended, failed = marker.get("ended"), marker.get("failed")
    return {
        "node": node if isinstance(node, str) else None,
        "kind": kind if isinstance(kind, str) else None,
        "count": count,
        "concurrency": concurrency if _whole(concurrency) else None,
        "failure": failure if isinstance(failure, str) else None,
        "waiting": marker.get("waiting") is True and status == "paused",
        "ended": ended if _whole(ended) else None,
        "failed": failed if _whole(failed) else None,
        # Failed while waiting is cancelled: its cascade marks the wait so a delivery later.
        "cancelled": marker.get("cancelled") is True
        or (status == "failed" and marker.get("waiting") is True),
        "runIds": [child_id(run_id, version, i) for i in range(min(count, LISTED_CHILDREN))],
    }


def timeline_entry_view(entry: StoredResult) -> dict[str, Any]:
    """One result as :class:`~refluxo.api.models.TimelineEntryView` shows it."""
    result = entry.result
    view: dict[str, Any] = {
        "seq": entry.seq,
        "nodeId": entry.node_id,
        "output": result.get("output"),
        "timestamp": result["timestamp"],
    }
    if result.get("error") is not None:
        view["error"] = result["error"]
    view["attempt"] = result.get("attempt", 1)
    return view


def run_detail_view(run: StoredRun, timeline: Sequence[StoredResult]) -> dict[str, Any]:
    """The run and a page of its timeline, as :class:`~refluxo.api.models.RunDetailView`."""
    metadata = run.head.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    return {
        **run_view(run),
        "parent": parent_view(metadata),
        "children": children_view(run.run_id, str(run.head.get("status")), metadata),
        "timeline": [timeline_entry_view(entry) for entry in timeline],
    }
