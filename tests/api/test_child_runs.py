"""Parent and child runs through the HTTP API: ``parent`` and ``children`` on a run's view,
and ``GET /runs/{id}/children``, a page of the child runs of the latest wait, by index.

The app is the runtime tests' with a ``map`` over the ``approval`` workflow: a child whose
item is ``{"ok": ...}`` completes, one whose item is ``null`` pauses until resumed, so the
children of one map are in different states.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from refluxo.api.http import HttpApi
from refluxo.api.run_json import LISTED_CHILDREN, child_id, children_view, parent_view
from refluxo.api.server import create_wsgi_app
from refluxo.api.stored_client import StoredClient
from refluxo.backends.sqlite.reader import SqliteRunReader
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.links import child_run_id
from tests.api.conftest import CALLER
from tests.support.apps import build_app
from tests.support.clock import FakeClock

ITEMS: list[Any] = [{"ok": True}, None, {"ok": False}, None, {"ok": True}]
"""Five children: 0, 2 and 4 complete; 1 and 3 pause at ``ask``."""


@pytest.fixture
def app(clock: FakeClock) -> App:
    app = build_app(clock)
    app.workflow(
        "fan",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "each",
                    "type": "map",
                    "data": {
                        "items": "{{ nodes.start.output.items }}",
                        "workflow": "approval",
                        "concurrency": "{{ nodes.start.output.concurrency }}",
                        "failure": "collect",
                    },
                },
                {"id": "after", "type": "echo", "data": {"done": True}},
            ],
            "edges": [{"source": "start", "target": "each"}, {"source": "each", "target": "after"}],
        },
    )
    return app


@pytest.fixture
def http(runtime: EmbeddedRuntime) -> Iterator[FlaskClient]:
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        yield client


def answer(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def start_fan(
    http: FlaskClient,
    runtime: EmbeddedRuntime,
    items: list[Any],
    *,
    concurrency: int = 10,
    run_id: str = "p",
) -> dict[str, Any]:
    """Start a map over ``items`` as run ``run_id``, run every step due, read the run."""
    body = {
        "workflow": "fan",
        "runId": run_id,
        "input": {"items": items, "concurrency": concurrency},
    }
    answer(http.post("/runs", json=body), 201)
    runtime.scheduler.drain()
    return dict(answer(http.get(f"/runs/{run_id}")))


def wait_version(runtime: EmbeddedRuntime, run_id: str = "p") -> int:
    return int(runtime.service.get(run_id).snapshot.metadata["childRuns"]["version"])


def all_children(http: FlaskClient, run_id: str, limit: int) -> list[dict[str, Any]]:
    """Every child listed, following ``next`` from page to page."""
    listed: list[dict[str, Any]] = []
    after = -1
    for _ in range(1000):
        page = answer(http.get(f"/runs/{run_id}/children?after={after}&limit={limit}"))
        listed += page["children"]
        if page["next"] is None:
            return listed
        assert page["next"] > after
        after = page["next"]
    raise AssertionError("the pages never ended")


# -- the run's view -------------------------------------------------------------------------


def test_a_waiting_parent_shows_its_children_and_each_child_its_parent(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    parent = start_fan(http, runtime, ITEMS)
    version = wait_version(runtime)
    assert parent["status"] == "paused"
    assert parent["parent"] is None
    assert parent["children"] == {
        "node": "each",
        "kind": "map",
        "count": 5,
        "concurrency": 10,
        "failure": "collect",
        "waiting": True,
        "ended": None,
        "failed": None,
        "cancelled": False,
        "runIds": [child_run_id("p", version, i) for i in range(5)],
    }
    for index, run_id in enumerate(parent["children"]["runIds"]):
        child = answer(http.get(f"/runs/{run_id}"))
        assert child["parent"] == {"runId": "p", "node": "each", "index": index}
        assert child["children"] is None
        assert child["status"] == ("paused" if ITEMS[index] is None else "completed")


def test_a_joined_parent_shows_how_its_children_ended(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    parent = start_fan(http, runtime, ITEMS)
    for run_id in parent["children"]["runIds"][1::2]:  # the two paused ones
        answer(http.post(f"/runs/{run_id}/resume", json={"payload": {"ok": True}}), 202)
    runtime.scheduler.drain()
    joined = answer(http.get("/runs/p"))
    assert joined["status"] == "completed"
    children = joined["children"]
    assert (children["waiting"], children["ended"], children["failed"]) == (False, 5, 0)
    assert children["cancelled"] is False
    assert children["runIds"] == parent["children"]["runIds"]


def test_a_parent_cancelled_while_waiting_waits_no_more(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    start_fan(http, runtime, ITEMS)
    answer(http.post("/runs/p/cancel", json={"reason": "enough"}))
    cancelled = answer(http.get("/runs/p"))
    assert cancelled["status"] == "failed"
    children = cancelled["children"]
    assert (children["waiting"], children["ended"], children["failed"]) == (False, None, None)
    assert children["cancelled"] is True
    runtime.scheduler.drain()  # the cancel's cascade is a delivery of its own
    assert answer(http.get("/runs/p"))["children"]["cancelled"] is True
    listed = answer(http.get("/runs/p/children"))["children"]
    # The paused children were cancelled with it; those that had completed stay so.
    assert [child["status"] for child in listed] == [
        "completed",
        "failed",
        "completed",
        "failed",
        "completed",
    ]


def test_a_run_that_started_no_children_has_neither(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    answer(http.post("/runs", json={"workflow": "chain", "runId": "plain"}), 201)
    runtime.scheduler.drain()
    run = answer(http.get("/runs/plain"))
    assert (run["parent"], run["children"]) == (None, None)
    assert answer(http.get("/runs/plain/children")) == {"children": [], "next": None}


def test_the_view_lists_the_ids_of_the_first_hundred_children_only(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    # One at a time, and the first pauses: only child 0 exists, the view names 100.
    parent = start_fan(http, runtime, [None] * 150, concurrency=1)
    version = wait_version(runtime)
    assert parent["children"]["count"] == 150
    assert len(parent["children"]["runIds"]) == LISTED_CHILDREN == 100
    assert parent["children"]["runIds"][-1] == child_run_id("p", version, 99)


def test_the_command_lines_stored_view_shows_the_same_links(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    parent = start_fan(http, runtime, ITEMS)
    stored = StoredClient(SqliteRunReader(runtime.db))
    for run_id in ["p", *parent["children"]["runIds"]]:
        assert stored.get(run_id) == answer(http.get(f"/runs/{run_id}"))


def test_child_ids_are_derived_as_the_runtime_derives_them() -> None:
    long_parent = "a" * 128  # too long for a readable id: hashed
    for parent, version, index in [("p", 3, 0), ("order-1", 12, 999), (long_parent, 2, 7)]:
        assert child_id(parent, version, index) == child_run_id(parent, version, index)
    assert child_id(long_parent, 2, 7).startswith("child-")


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"childRuns": "map"},
        {"childRuns": {"version": "3", "count": 2}},
        {"childRuns": {"version": 3, "count": True}},
        {"childRuns": {"version": 3, "count": -1}},
        {"parentRun": {"runId": "p", "node": "m"}},
        {"parentRun": {"runId": "p", "node": "m", "index": False}},
    ],
)
def test_links_the_runtime_did_not_write_show_as_none(metadata: dict[str, Any]) -> None:
    assert children_view("r", "paused", metadata) is None
    assert parent_view(metadata) is None


# -- GET /runs/{id}/children ----------------------------------------------------------------


def test_children_are_listed_by_index_with_their_state_and_node(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    start_fan(http, runtime, ITEMS)
    version = wait_version(runtime)
    page = answer(http.get("/runs/p/children"))
    assert page["next"] is None
    listed = page["children"]
    assert [child["index"] for child in listed] == [0, 1, 2, 3, 4]
    for child in listed:
        index = child["index"]
        record = runtime.service.get(child_run_id("p", version, index))
        assert child == {
            "index": index,
            "runId": record.run_id,
            "status": "paused" if ITEMS[index] is None else "completed",
            "node": record.snapshot.current_node_id,
            "updatedAt": record.updated_at,
        }
    assert [child["node"] for child in listed] == [None, "ask", None, "ask", None]  # ended: none


def test_pages_follow_next_until_null(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    start_fan(http, runtime, ITEMS)
    first = answer(http.get("/runs/p/children?limit=2"))
    assert [child["index"] for child in first["children"]] == [0, 1]
    assert first["next"] == 1
    second = answer(http.get("/runs/p/children?after=1&limit=2"))
    assert [child["index"] for child in second["children"]] == [2, 3]
    assert second["next"] == 3
    last = answer(http.get("/runs/p/children?after=3&limit=2"))
    assert [child["index"] for child in last["children"]] == [4]
    assert last["next"] is None
    assert answer(http.get("/runs/p/children?after=4")) == {"children": [], "next": None}
    assert answer(http.get("/runs/p/children?after=9999")) == {"children": [], "next": None}
    for limit in (1, 3, 5, 500):
        assert [c["index"] for c in all_children(http, "p", limit)] == [0, 1, 2, 3, 4]


def test_children_not_started_yet_are_left_out(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    # Two at a time and both pause: children 2.. are not created until one of them ends.
    start_fan(http, runtime, [None] * 7, concurrency=2)
    page = answer(http.get("/runs/p/children?limit=4"))
    assert [child["index"] for child in page["children"]] == [0, 1]
    assert page["next"] == 3  # indices 4..6 are still to look at
    assert [c["index"] for c in all_children(http, "p", 4)] == [0, 1]
    first = answer(http.get("/runs/p"))["children"]["runIds"][0]
    answer(http.post(f"/runs/{first}/resume", json={"payload": {"ok": True}}), 202)
    runtime.scheduler.drain()  # child 0 ends: child 2 starts
    listed = all_children(http, "p", 100)
    assert [(c["index"], c["status"]) for c in listed] == [
        (0, "completed"),
        (1, "paused"),
        (2, "paused"),
    ]


def test_a_run_with_children_of_its_own_is_listed_as_any(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    """A child's page lists the child's own children: a list is of one run's wait only."""
    start_fan(http, runtime, ITEMS)
    child = answer(http.get("/runs/p/children?limit=1"))["children"][0]["runId"]
    assert answer(http.get(f"/runs/{child}/children")) == {"children": [], "next": None}


def test_an_unknown_run_is_404(http: FlaskClient) -> None:
    for path in ("/runs/ghost/children", "/runs/not%20an%20id/children"):
        error = answer(http.get(path), 404)["error"]
        assert error["code"] == "run_not_found"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be between 1 and 500"),
        ("limit=501", "limit must be between 1 and 500"),
        ("limit=-3", "limit must be between 1 and 500"),
        ("limit=ten", "limit must be an integer (ASCII digits)"),
        ("limit=1.5", "limit must be an integer (ASCII digits)"),
        ("limit=", "limit must be an integer (ASCII digits)"),
        ("limit=%205", "limit must be an integer (ASCII digits)"),
        ("limit=\uff15", "limit must be an integer (ASCII digits)"),
        ("limit=" + "9" * 30, "limit must be an integer (ASCII digits)"),
        ("after=-2", "after must be between -1 and 4611686018427387904"),
        ("after=x", "after must be an integer (ASCII digits)"),
        ("after=1e3", "after must be an integer (ASCII digits)"),
        ("after=" + "9" * 20, "after must be between -1 and 4611686018427387904"),
    ],
)
def test_malformed_parameters_are_400_with_a_message(
    http: FlaskClient, runtime: EmbeddedRuntime, query: str, message: str
) -> None:
    start_fan(http, runtime, ITEMS)
    for run_id in ("p", "ghost"):  # the parameters are checked first, whatever the run
        error = answer(http.get(f"/runs/{run_id}/children?{query}"), 400)["error"]
        assert (error["code"], error["message"]) == ("bad_request", message)


def test_the_first_of_repeated_parameters_counts(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    start_fan(http, runtime, ITEMS)
    page = answer(http.get("/runs/p/children?limit=1&limit=x&unknown=1"))
    assert [child["index"] for child in page["children"]] == [0]


def test_listing_children_needs_the_key(secured: FlaskClient, runtime: EmbeddedRuntime) -> None:
    body = {"workflow": "fan", "runId": "p", "input": {"items": ITEMS, "concurrency": 10}}
    answer(secured.post("/runs", json=body, headers=CALLER), 201)
    runtime.scheduler.drain()
    for headers in ({}, {"X-API-Key": "not-the-key-0123456789"}):
        refused = secured.get("/runs/p/children", headers=headers)
        assert refused.status_code == 401
        assert refused.get_json()["error"]["code"] == "unauthorized"
        assert "children" not in refused.get_json()
        assert secured.get("/runs/p", headers=headers).status_code == 401
    listed = answer(secured.get("/runs/p/children", headers=CALLER))
    assert len(listed["children"]) == 5
