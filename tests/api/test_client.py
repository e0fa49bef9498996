"""Both clients show a run exactly as the HTTP API answers for it.

The local client builds its views from the response models in process; the HTTP client
returns what the server sends. For the same run in the same state, the three agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from refluxo.api.client import ApiError, HttpClient, LocalClient
from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer, create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime


@pytest.fixture
def api(runtime: EmbeddedRuntime) -> HttpApi:
    return HttpApi(runtime.service)


@pytest.fixture
def http(api: HttpApi) -> Iterator[FlaskClient]:
    with create_wsgi_app(api).test_client() as client:
        yield client


@pytest.fixture
def remote(api: HttpApi) -> Iterator[HttpClient]:
    with LocalServer(api) as server:
        yield HttpClient(server.url, timeout=10)


@pytest.fixture
def local(runtime: EmbeddedRuntime) -> LocalClient:
    return LocalClient(runtime.service)


def answer(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_a_run_read_every_way_is_the_same(
    http: FlaskClient, remote: HttpClient, local: LocalClient, runtime: EmbeddedRuntime
) -> None:
    run_id = answer(http.post("/runs", json={"workflow": "approval", "runId": "r-1"}), 201)["runId"]
    runtime.scheduler.drain()
    http.post("/runs", json={"workflow": "chain", "runId": "r-2", "input": {"n": 1}})
    runtime.scheduler.drain()  # r-2 completes: a timeline of five entries

    for target in (run_id, "r-2"):
        served = answer(http.get(f"/runs/{target}"), 200)
        assert local.get(target) == served == remote.get(target)
        page = answer(http.get(f"/runs/{target}?timelineAfter=1&timelineLimit=2"), 200)
        assert local.get(target, timeline_after=1, timeline_limit=2) == page
    assert len(local.get("r-2")["timeline"]) == 5

    listed = answer(http.get("/runs?limit=50"), 200)
    assert local.list() == listed == remote.list()
    paused = answer(http.get("/runs?status=paused&limit=1"), 200)
    assert local.list("paused", 1) == paused == remote.list("paused", 1)
    assert [run["runId"] for run in paused["runs"]] == [run_id]


def test_the_answers_to_changes_are_the_same(
    http: FlaskClient, local: LocalClient, remote: HttpClient, runtime: EmbeddedRuntime
) -> None:
    body = {"workflow": "approval", "runId": "r-1"}  # no input: the approval pauses
    started = answer(http.post("/runs", json=body), 201)
    again = answer(http.post("/runs", json=body), 200)
    assert again == started
    assert local.start("approval", None, "r-1") == started == remote.start("approval", None, "r-1")
    runtime.scheduler.drain()

    resumed = answer(http.post("/runs/r-1/resume", json={"payload": {"ok": True}}), 202)
    # The same resume, retried before the step ran, answers with the same run.
    assert local.resume("r-1", {"ok": True}) == resumed == remote.resume("r-1", {"ok": True})

    local.start("approval", None, "r-2")
    runtime.scheduler.drain()
    cancelled = local.cancel("r-2", "not needed")
    served = answer(http.get("/runs/r-2?timelineLimit=0"), 200)
    detail = ("timeline", "parent", "children")  # what only the run's own page answers
    assert cancelled == {key: value for key, value in served.items() if key not in detail}
    assert (served["timeline"], served["parent"], served["children"]) == ([], None, None)


def test_errors_are_the_same(http: FlaskClient, local: LocalClient, remote: HttpClient) -> None:
    served = answer(http.get("/runs/ghost"), 404)["error"]
    for client in (local, remote):
        with pytest.raises(ApiError) as caught:
            client.get("ghost")
        assert (caught.value.status, caught.value.code, caught.value.message) == (
            404,
            served["code"],
            served["message"],
        )
