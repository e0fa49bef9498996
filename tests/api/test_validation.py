"""Requests are validated by the route's models, strictly, with messages naming the field;
domain errors become statuses in one place; nothing unexpected leaks out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from refluxo.api.contract import Call, Reply, Route
from refluxo.api.http import HttpApi
from refluxo.api.models import HealthView, RunView
from refluxo.api.parsing import MAX_JSON_DEPTH
from refluxo.api.routes import ROUTES
from refluxo.api.server import create_wsgi_app
from refluxo.errors import LimitExceededError, TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    Unauthorized,
    UnknownWorkflow,
)
from tests.api.support import database


@pytest.fixture
def http(runtime: EmbeddedRuntime) -> Iterator[FlaskClient]:
    runtime.service.start("approval", run_id="paused")
    runtime.scheduler.drain()
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        yield client


STEP = {"runId": "paused", "version": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "POST",
            "/runs",
            {"workflow": "chain", "runId": None},
            "field 'runId' must be of type str",
        ),
        ("POST", "/runs", {"workflow": "chain", "runId": 5}, "field 'runId' must be of type str"),
        ("POST", "/runs", {"workflow": None}, "field 'workflow' must be of type str"),
        ("POST", "/runs", {"workflow": "chain", "runId": "x1\n"}, "runId must be 1-128"),
        ("POST", "/runs", {"workflow": "chain", "runId": "é"}, "runId must be 1-128"),
        ("POST", "/runs/paused/cancel", {"reason": None}, "field 'reason' must be of type str"),
        ("POST", "/runs/paused/cancel", {"reason": 7}, "field 'reason' must be of type str"),
        (
            "POST",
            "/runs/paused/resume",
            {"payload": 1, "version": "1"},
            "field 'version' must be of type int",
        ),
        (
            "POST",
            "/runs/paused/resume",
            {"payload": 1, "version": 1.0},
            "field 'version' must be of type int",
        ),
        (
            "POST",
            "/runs/paused/resume",
            {"payload": 1, "version": None},
            "field 'version' must be of type int",
        ),
        (
            "POST",
            "/runs/paused/resume",
            {"payload": 1, "version": False},
            "field 'version' must be of type int",
        ),
        (
            "POST",
            "/runs/paused/resume",
            {"payload": 1, "version": -1},
            "field 'version' must be non-negative",
        ),
        ("POST", "/runs/paused/resume", {}, "missing field 'payload'"),
        ("POST", "/runs/paused/resume", {"paylod": 1}, "missing field 'payload'"),
        ("POST", "/tasks/step", {**STEP, "dueAt": None}, "field 'dueAt' must be of type int"),
        ("POST", "/tasks/step", {**STEP, "hop": 2**62 + 1}, "field 'hop' must be non-negative"),
        ("POST", "/tasks/step", {**STEP, "runId": 1}, "field 'runId' must be of type str"),
        ("POST", "/tasks/step", {"run_id": "paused", "version": 0}, "missing field 'runId'"),
        ("POST", "/tasks/step", {**STEP, "runId": "../x"}, "runId must be 1-128 characters"),
        ("POST", "/tasks/step", {**STEP, "runId": "x-1\u0000"}, "runId must be 1-128"),
        ("POST", "/tasks/step", {**STEP, "runId": "x" * 129}, "runId must be 1-128"),
        ("GET", "/runs?limit=201", None, "limit must be between 1 and 200"),
        ("GET", "/runs?limit=1.0", None, "limit must be an integer"),
        ("GET", "/runs?status=PAUSED", None, "status must be one of active, paused, error"),
        ("GET", "/runs/paused?timelineLimit=-1", None, "timelineLimit must be non-negative"),
        ("GET", "/runs/paused?timelineAfter=-2", None, "timelineAfter must be between -1 and"),
        ("GET", "/runs/paused?timelineAfter=x", None, "timelineAfter must be an integer"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(
    http: FlaskClient,
    runtime: EmbeddedRuntime,
    method: str,
    path: str,
    body: Any,
    message: str,
) -> None:
    before = database(runtime)
    response = http.open(path, method=method, json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "bad_request"
    assert message in response.get_json()["error"]["message"]
    assert database(runtime) == before


def nested(opening: bytes, depth: int) -> bytes:
    """A start whose input nests ``depth`` arrays or objects (the body one level more)."""
    closing = b"]" if opening == b"[" else b"}"
    return b'{"workflow": "chain", "input": ' + opening * depth + b"1" + closing * depth + b"}"


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 199, 980, 100_000])
def test_a_body_nested_too_deeply_is_400(
    http: FlaskClient, runtime: EmbeddedRuntime, opening: bytes, depth: int
) -> None:
    """199: stored, then unreadable by the store (pydantic parses 200 levels at most); 980:
    parsed, then too deep for the store's encoder; 100,000: too deep for Python's parser
    (a RecursionError). Each was a 500, or a run that could not be read back."""
    before = database(runtime)
    response = http.post("/runs", data=nested(opening, depth), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "limit_exceeded",
        "message": f"the body is nested more than {MAX_JSON_DEPTH} levels deep",
    }
    assert database(runtime) == before


def test_a_body_nested_up_to_the_limit_is_accepted(http: FlaskClient) -> None:
    response = http.post(
        "/runs", data=nested(b"[", MAX_JSON_DEPTH - 1), content_type="application/json"
    )
    assert response.status_code == 201


def test_unknown_fields_are_ignored_and_only_wire_names_count(http: FlaskClient) -> None:
    started = http.post("/runs", json={"workflow": "chain", "run_id": "snake", "extra": [1]})
    assert started.status_code == 201
    assert started.get_json()["runId"] != "snake"


def test_an_empty_optional_body_takes_the_defaults(
    http: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    cancelled = http.post("/runs/paused/cancel")
    assert cancelled.status_code == 200
    assert cancelled.get_json()["snapshot"]["metadata"]["failedReason"] == "Cancelled"


def test_query_defaults_apply(http: FlaskClient, runtime: EmbeddedRuntime) -> None:
    for run_id in ("c-1", "c-2", "c-3"):
        runtime.service.start("chain", run_id=run_id)
    runtime.scheduler.drain()
    timeline = http.get("/runs/c-1").get_json()["timeline"]  # after -1, at most 100
    assert [entry["seq"] for entry in timeline] == [0, 1, 2, 3, 4]
    assert len(http.get("/runs").get_json()["runs"]) == 4  # at most 50, any status


# -- errors to statuses -------------------------------------------------------------------


def failing(error: Exception) -> Any:
    def handler(call: Call) -> HealthView:
        raise error

    return handler


def api_answering(runtime: EmbeddedRuntime, handler: Any) -> FlaskClient:
    routes = tuple(
        Route("GET", "/healthz", "health", handler, HealthView, "probe")
        if route.operation_id == "health"
        else route
        for route in ROUTES
    )
    return create_wsgi_app(HttpApi(runtime.service, routes=routes)).test_client()


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UnknownWorkflow("unknown workflow 'x'"), 404, "unknown_workflow"),
        (RunNotFound("no run 'x'"), 404, "run_not_found"),
        (RunConflict("run 'x' is completed"), 409, "conflict"),
        (PayloadTooLarge("too large"), 413, "payload_too_large"),
        (Unauthorized("who are you"), 401, "unauthorized"),
        (Forbidden("not you"), 403, "forbidden"),
        (BadRequest("bad"), 400, "bad_request"),
        (LimitExceededError("too deep"), 400, "limit_exceeded"),
        (TransientError("store busy"), 503, "unavailable"),
    ],
)
def test_domain_errors_map_to_their_status(
    runtime: EmbeddedRuntime, error: Exception, status: int, code: str
) -> None:
    with api_answering(runtime, failing(error)) as client:
        response = client.get("/healthz")
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert str(error) in response.get_json()["error"]["message"]


def test_an_unexpected_error_is_a_500_that_says_nothing_of_it(runtime: EmbeddedRuntime) -> None:
    with api_answering(runtime, failing(KeyError("secret detail"))) as client:
        response = client.get("/healthz")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal", "message": "internal error; see the server log"}
    }


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(HealthView(status="ok"), 201), id="undeclared-status"),
        pytest.param(
            RunView(
                run_id="r",
                workflow="w",
                definition_version="v",
                status="active",
                version=0,
                current_node_id=None,
                created_at=0,
                updated_at=0,
                result_count=0,
                snapshot={},
            ),
            id="undeclared-model",
        ),
    ],
)
def test_a_handler_breaking_its_declaration_is_an_error_not_an_answer(
    runtime: EmbeddedRuntime, reply: Any
) -> None:
    with api_answering(runtime, lambda call: reply) as client:
        assert client.get("/healthz").status_code == 500


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/runs?limit=\u0665", None),
        ("GET", "/runs?limit=\uff15", None),
        ("GET", "/runs?limit=%205", None),
        ("GET", "/runs?limit=+5", None),
        ("GET", "/runs?limit=1_0", None),
        ("GET", "/runs?limit=" + "9" * 5000, None),
        ("GET", "/runs/paused?timelineLimit=\u0661\u0660", None),
        ("GET", "/runs/paused?timelineAfter=\u0968", None),
        ("POST", "/runs/paused/resume", '{"version": \u0665}'),
        ("POST", "/runs/paused/resume", '{"version": \uff10}'),
        ("POST", "/runs/paused/resume", '{"version": 1\u0665}'),
    ],
)
def test_integers_are_ascii_digits_only(
    http: FlaskClient, runtime: EmbeddedRuntime, method: str, path: str, body: str | None
) -> None:
    """``int()`` reads other scripts' digits, spaces, a plus sign and underscores: the
    query accepted ``limit=\u0665`` as 5."""
    before = database(runtime)
    data = None if body is None else body.encode()
    response = http.open(path, method=method, data=data, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "bad_request"
    assert database(runtime) == before


def test_a_cursor_is_bounded_and_never_parsed_past_the_depth_limit(http: FlaskClient) -> None:
    """A cursor decoding to deeply nested JSON was a RecursionError (500)."""
    import base64

    for cursor in (
        base64.urlsafe_b64encode(b"[" * 5_000).decode(),
        base64.urlsafe_b64encode(b"[" * 380).decode(),  # within 512 characters
        "x" * 513,
    ):
        response = http.get(f"/runs?cursor={cursor}")
        assert response.status_code == 400, response.get_json()
        assert "cursor" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/runs", b'{"workflow": "chain", "input": {"name": "\\ud800"}}', "surrogate"),
        ("/runs", b'{"workflow": "chain", "input": {"\\udfff": 1}}', "surrogate"),
        ("/runs/paused/resume", b'{"payload": ["\\udc00"]}', "surrogate"),
    ],
    ids=["input-value", "input-key", "payload"],
)
def test_an_escaped_lone_surrogate_is_a_400_and_nothing_is_stored(
    http: FlaskClient, runtime: EmbeddedRuntime, path: str, body: bytes, message: str
) -> None:
    """JSON may escape half of a UTF-16 pair; no store can keep it as text."""
    before = [run.run_id for run in runtime.service.list().runs]
    response = http.post(path, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert message in response.get_json()["error"]["message"]
    assert [run.run_id for run in runtime.service.list().runs] == before
    assert runtime.service.get("paused").status == "paused"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runs/paused/resume", b'{"payload": {"approved": false}, "payload": {"approved": true}}'),
        ("/runs", b'{"workflow": "chain", "input": {"a": 1, "b": 2, "a": 3}}'),
    ],
    ids=["top-level", "nested"],
)
def test_a_repeated_key_is_a_400_and_nothing_changes(
    http: FlaskClient, runtime: EmbeddedRuntime, path: str, body: bytes
) -> None:
    """Readers disagree on which of two equal keys wins: the API takes neither."""
    before = [run.run_id for run in runtime.service.list().runs]
    response = http.post(path, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "appears more than once in an object" in response.get_json()["error"]["message"]
    assert [run.run_id for run in runtime.service.list().runs] == before
    assert runtime.service.get("paused").status == "paused"
