"""The HTTP API: every endpoint, and every rejection is a clear 4xx that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer, create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from tests.support.stores import assert_history_consistent


@pytest.fixture
def api(runtime: EmbeddedRuntime) -> HttpApi:
    return HttpApi(runtime.service, max_body_bytes=4096)


@pytest.fixture
def http(api: HttpApi) -> Iterator[FlaskClient]:
    flask_app: Flask = create_wsgi_app(api)
    with flask_app.test_client() as client:
        yield client


def state(runtime: EmbeddedRuntime) -> list[tuple[str, int, int]]:
    """Everything a rejected request must leave alone."""
    rows = (
        runtime.db.connection()
        .execute("SELECT run_id, version, result_count FROM runs ORDER BY run_id")
        .fetchall()
    )
    deliveries = runtime.db.connection().execute("SELECT count(*) FROM deliveries").fetchone()
    return [tuple(row) for row in rows] + [("deliveries", deliveries[0], 0)]


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"]
    message: str = body["error"]["message"]
    assert message
    return message


def test_start_follow_resume_complete(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    started = http.post("/runs", json={"workflow": "approval"})
    assert started.status_code == 201
    run = started.get_json()
    assert started.headers["Location"] == f"/runs/{run['runId']}"
    assert run["status"] == "active"
    assert run["definitionVersion"] == runtime.app.get_workflow("approval").version
    runtime.scheduler.drain()

    paused = http.get(f"/runs/{run['runId']}").get_json()
    assert paused["status"] == "paused"
    assert paused["currentNodeId"] == "ask"

    resumed = http.post(f"/runs/{run['runId']}/resume", json={"payload": {"ok": False}})
    assert resumed.status_code == 202
    runtime.scheduler.drain()
    final = http.get(f"/runs/{run['runId']}").get_json()
    assert final["status"] == "completed"
    assert [(e["nodeId"], e["output"]) for e in final["timeline"]] == [
        ("ask", {"ok": False}),
        ("no", {"answer": "no"}),
    ]
    assert assert_history_consistent(runtime.store, run["runId"]) == ["ask", "no"]


def test_idempotent_start_with_run_id(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    body = {"workflow": "chain", "input": {"a": 1}, "runId": "order-42"}
    assert http.post("/runs", json=body).status_code == 201
    again = http.post("/runs", json=body)
    assert again.status_code == 200
    assert again.get_json()["runId"] == "order-42"
    message = error_of(http.post("/runs", json={**body, "input": {"a": 2}}), 409)
    assert "different workflow or input" in message
    runtime.scheduler.drain()
    assert len(assert_history_consistent(runtime.store, "order-42")) == 5


def test_list_filters_by_status_and_pages(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    ids = [http.post("/runs", json={"workflow": "approval"}).get_json()["runId"] for _ in range(3)]
    runtime.scheduler.drain()
    http.post("/runs", json={"workflow": "chain"})
    paused = http.get("/runs?status=paused&limit=2").get_json()
    assert len(paused["runs"]) == 2
    rest = http.get(f"/runs?status=paused&limit=2&cursor={paused['nextCursor']}").get_json()
    assert rest["nextCursor"] is None
    assert sorted(r["runId"] for r in paused["runs"] + rest["runs"]) == sorted(ids)
    assert [r["status"] for r in http.get("/runs?status=active").get_json()["runs"]] == ["active"]


def test_cancel(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    run = http.post("/runs", json={"workflow": "approval"}).get_json()
    runtime.scheduler.drain()
    cancelled = http.post(f"/runs/{run['runId']}/cancel", json={"reason": "duplicate order"})
    assert cancelled.status_code == 200
    view = cancelled.get_json()
    assert view["status"] == "failed"
    assert view["snapshot"]["metadata"]["failedReason"] == "duplicate order"
    error_of(http.post(f"/runs/{run['runId']}/cancel"), 409)
    error_of(http.post(f"/runs/{run['runId']}/resume", json={"payload": {}}), 409)


def test_health_workflows_and_openapi(http: FlaskClient) -> None:
    assert http.get("/healthz").get_json() == {"status": "ok"}
    names = {w["name"] for w in http.get("/workflows").get_json()["workflows"]}
    assert names == {"chain", "approval", "flaky", "loop"}
    document = http.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert "/runs/{runId}/resume" in document["paths"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/runs", b"{not json", 400, "malformed JSON"),
        ("POST", "/runs", b"[1, 2]", 400, "JSON object"),
        ("POST", "/runs", b"", 400, "body is required"),
        ("POST", "/runs", b'{"input": 1}', 400, "missing field 'workflow'"),
        ("POST", "/runs", b'{"workflow": 7}', 400, "must be of type str"),
        ("POST", "/runs", b'{"workflow": "nope"}', 404, "unknown workflow 'nope'"),
        ("POST", "/runs", b'{"workflow": "chain", "runId": "bad id!"}', 400, "runId must be"),
        ("POST", "/runs", b'{"workflow": "chain", "input": "' + b"x" * 5000 + b'"}', 413, "over"),
        ("GET", "/runs/ghost", None, 404, "no run 'ghost'"),
        ("POST", "/runs/ghost/resume", b'{"payload": null}', 404, "no run 'ghost'"),
        ("POST", "/runs/existing/resume", b"", 400, "body is required"),
        ("POST", "/runs/existing/resume", b"{}", 400, "missing field 'payload'"),
        ("POST", "/runs/ghost/cancel", b"{}", 404, "no run 'ghost'"),
        ("GET", "/runs?status=sleeping", None, 400, "status must be one of"),
        ("GET", "/runs?limit=0", None, 400, "limit must be between"),
        ("GET", "/runs?limit=ten", None, 400, "limit must be an integer"),
        ("GET", "/runs?cursor=%%%", None, 400, "invalid cursor"),
        ("DELETE", "/runs", None, 405, "use GET, HEAD, POST"),
        ("GET", "/nowhere", None, 404, "no endpoint"),
        ("POST", "/tasks/step", b'{"runId": "x"}', 400, "missing field 'version'"),
        ("POST", "/tasks/step", b'{"runId": "x", "version": -1}', 400, "non-negative"),
        ("POST", "/tasks/step", b'{"runId": "x", "version": true}', 400, "must be of type int"),
    ],
)
def test_bad_requests_are_clear_4xx_and_change_nothing(
    http: FlaskClient,
    runtime: EmbeddedRuntime,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    fragment: str,
) -> None:
    http.post("/runs", json={"workflow": "approval", "runId": "existing"})
    runtime.scheduler.drain()
    before = state(runtime)
    response = http.open(path, method=method, data=body, content_type="application/json")
    assert fragment in error_of(response, status)
    assert state(runtime) == before


def test_resume_of_a_run_that_is_not_paused_is_409(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    run = http.post("/runs", json={"workflow": "chain"}).get_json()
    before = state(runtime)
    message = error_of(http.post(f"/runs/{run['runId']}/resume", json={"payload": 1}), 409)
    assert "is active, not paused" in message
    assert state(runtime) == before


def test_resume_with_a_stale_version_is_409(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    run = http.post("/runs", json={"workflow": "approval"}).get_json()
    runtime.scheduler.drain()
    before = state(runtime)
    message = error_of(
        http.post(f"/runs/{run['runId']}/resume", json={"payload": {}, "version": 0}), 409
    )
    assert "not 0" in message
    assert state(runtime) == before


def test_a_chunked_body_is_refused_by_the_local_server(
    api: HttpApi, runtime: EmbeddedRuntime
) -> None:
    """The local server asks for a Content-Length (411) and changes nothing; a body without
    one is otherwise cut off at the limit (see test_a_stream_without_length_is_cut_off)."""
    before = state(runtime)

    def chunks() -> Iterator[bytes]:
        yield b'{"workflow": "chain", "input": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    with LocalServer(api) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = HTTPConnection(host, int(port), timeout=10)
        connection.request(
            "POST",
            "/runs",
            body=chunks(),
            encode_chunked=True,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
        connection.close()
    assert status == 411
    assert body["error"]["code"] == "length_required"
    assert state(runtime) == before


def test_a_stream_without_length_is_cut_off_at_the_limit() -> None:
    import io

    from refluxo.api.parsing import read_body
    from refluxo.runtime.errors import PayloadTooLarge

    class Unframed:
        content_length = None
        stream = io.BytesIO(b'{"input": "' + b"y" * 10_000 + b'"}')

    with pytest.raises(PayloadTooLarge, match="over 4096 bytes"):
        read_body(Unframed(), 4096, required=True)


def test_step_endpoint_delivers(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    run = http.post("/runs", json={"workflow": "chain"}).get_json()
    first = http.post("/tasks/step", json={"runId": run["runId"], "version": 0})
    assert first.get_json() == {"outcome": "committed", "steps": 1}
    duplicate = http.post("/tasks/step", json={"runId": run["runId"], "version": 0})
    assert duplicate.get_json() == {"outcome": "stale", "steps": 0}
    assert json.loads(http.get(f"/runs/{run['runId']}").data)["version"] == 1


def test_a_retried_resume_is_idempotent_until_the_step_runs(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    run = http.post("/runs", json={"workflow": "approval"}).get_json()
    runtime.scheduler.drain()
    paused = runtime.service.get(run["runId"])
    body = {"payload": {"ok": True}, "version": paused.version}
    first = http.post(f"/runs/{run['runId']}/resume", json=body)
    again = http.post(f"/runs/{run['runId']}/resume", json=body)  # the reply was lost: retry
    assert first.status_code == again.status_code == 202
    assert again.get_json()["version"] == first.get_json()["version"]
    other = http.post(f"/runs/{run['runId']}/resume", json={"payload": {"ok": False}})
    error_of(other, 409)
    runtime.scheduler.drain()
    assert [e.node_id for e in runtime.store.timeline(run["runId"])] == ["ask", "yes"]
    error_of(http.post(f"/runs/{run['runId']}/resume", json=body), 409)  # the step ran


def test_an_unavailable_backend_on_the_step_route_is_429_so_cloud_tasks_retries(
    runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refluxo.errors import TransientError

    def unavailable(*_: object, **__: object) -> None:
        raise TransientError("Firestore contention persisted after 5 attempts")

    monkeypatch.setattr(runtime.store, "load_run", unavailable)
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        response = client.post("/tasks/step", json={"runId": "r", "version": 0})
    # 429, not 503: Cloud Tasks retries both, but counts a 429 as an answer, so an outage
    # never counts as an attempt of the node that went unanswered.
    assert "contention persisted" in error_of(response, 429)
    assert response.headers["Retry-After"] == "1"
