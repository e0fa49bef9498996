"""The run views of :mod:`refluxo.api.models`, built from stored wire JSON without pydantic.

``refluxo status`` prints a run as the API shows it. Going through the response models
would load pydantic and the models of the engine, more than the rest of the command
costs; the stored head and results are already wire JSON, so these functions only pick
their fields in the views' order and leave out what the views leave out (a ``null``
``error``, ``lastStartedAt``, ``totalExecutionTime`` or ``retryState``, and the head's
empty context). The same dict as ``RunDetailView.of_run(...).model_dump(mode="json",
by_alias=True)``: tests/cli/test_stored_runs.py compares both on runs in every state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from refluxo.runtime.stored import StoredResult, StoredRun

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
    return {**run_view(run), "timeline": [timeline_entry_view(entry) for entry in timeline]}
