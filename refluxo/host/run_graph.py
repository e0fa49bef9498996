"""A workflow's graph, and what a run made of each node, for ``refluxo graph`` to draw.

The graph comes from a workflow file, a workflow the App registers, or the run itself (the
definition it started with, as ``GET /runs/{id}/graph`` answers); it is kept as the API's
plain JSON (``nodes``: ``id``, ``type``; ``edges``: ``source``, ``target``,
``sourceHandle``), so the Mermaid and SVG writers need neither pydantic nor the engine.

A node's state is the inspector's: ``done`` (visited), ``failed`` (where a failed run
stopped), ``retrying`` (a retry is pending), ``paused``, ``waiting`` (on a timer),
``current`` (active), or not reached; with its visit and failed-attempt counts.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from refluxo.host.run_text import resume_at, retry_state

if TYPE_CHECKING:
    from refluxo.api.client import RunClient
    from refluxo.runtime.app import App


class NodeState(NamedTuple):
    state: str
    """``done``, ``failed``, ``retrying``, ``paused``, ``waiting``, ``current`` or ``""``."""
    visits: int
    failures: int
    """Failed attempts recorded for the node (each is a result with an error)."""


class RunPath(NamedTuple):
    """What a run did on a graph: each node's state, and the edges it followed."""

    states: dict[str, NodeState]
    taken: set[tuple[str, str]]


def graph_of_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The graph of a workflow's JSON (a file's, or a registered workflow's wire form)."""
    nodes = [{"id": str(n["id"]), "type": str(n.get("type", ""))} for n in wire.get("nodes", [])]
    edges = [
        {
            "source": str(e["source"]),
            "target": str(e["target"]),
            "sourceHandle": e.get("sourceHandle"),
        }
        for e in wire.get("edges", [])
    ]
    start = wire.get("start") or (nodes[0]["id"] if nodes else "")
    return {"start": start, "nodes": nodes, "edges": edges}


def registered_graph(app: App, name: str) -> dict[str, Any]:
    """The graph of the workflow ``app`` registers as ``name`` (unknown: a RunError)."""
    spec = app.get_workflow(name)
    return {**graph_of_wire(spec.wire), "workflow": name}


def run_graph(client: RunClient, run_id: str) -> dict[str, Any]:
    """The graph run ``run_id`` executes, as ``GET /runs/{id}/graph`` answers."""
    from refluxo.api.client import HttpClient, LocalClient

    if isinstance(client, HttpClient):
        answer: dict[str, Any] = client.request(
            "GET", f"/runs/{urllib.parse.quote(run_id, safe='')}/graph"
        )
        return answer
    assert isinstance(client, LocalClient)
    from refluxo.api.api_error import ApiError
    from refluxo.api.models import RunGraphView
    from refluxo.runtime.errors import RunError, RunNotFound

    service = client.service
    try:
        record = service.get(run_id)
    except RunError as err:
        raise ApiError.of(err) from err
    wire = service.store.get_definition(record.definition_version)
    if wire is None:
        raise ApiError.of(RunNotFound(f"the definition of run {run_id!r} is missing"))
    view: dict[str, Any] = RunGraphView.of(record, wire).model_dump(mode="json", by_alias=True)
    return view


def run_path(view: Mapping[str, Any]) -> RunPath:
    """Each node's state in run ``view`` (``GET /runs/{id}`` with its timeline)."""
    visits: dict[str, int] = {}
    failures: dict[str, int] = {}
    path: list[str] = []
    for entry in view.get("timeline") or []:
        node = str(entry["nodeId"])
        if entry.get("error"):
            failures[node] = failures.get(node, 0) + 1
        else:
            visits[node] = visits.get(node, 0) + 1
            path.append(node)
    states = {
        node: NodeState("done", count, failures.get(node, 0)) for node, count in visits.items()
    }
    for node, count in failures.items():
        states.setdefault(node, NodeState("", 0, count))
    current = view.get("currentNodeId")
    status = view.get("status")
    retry = retry_state(view)
    here = ""
    if status == "failed" and current:
        here = "failed"
    elif status == "error":
        current = (retry or {}).get("nodeId", current)
        here = "retrying"
    elif status == "paused":
        here = "waiting" if resume_at(view) is not None else "paused"
    elif status == "active":
        here = "current"
    if here and current:
        before = states.get(str(current), NodeState("", 0, 0))
        states[str(current)] = before._replace(state=here)
    return RunPath(states, set(itertools.pairwise(path)))


__all__ = ["NodeState", "RunPath", "graph_of_wire", "registered_graph", "run_graph", "run_path"]
