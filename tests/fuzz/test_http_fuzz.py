"""Schemathesis against the published OpenAPI document, on the real WSGI app in process.

The quick slice of ``bench/fuzz.py`` (same harness, same checks, see ``conftest.py``): the
coverage phase, a few examples per operation and mode, short request sequences, a few
scenarios of the stateful phase (schemathesis' state machine on the document's links), the
scenarios that must be reached whatever Hypothesis draws, and the hand-written nasty
requests that once reached a 500, changed state from a web page or answered HTML. Every
response is checked: no 5xx, conformance to the document, a proper error body, and no
change for a rejection.
Generation is derandomized, so the slice sends the same requests on every run.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET

from refluxo.api.contract import Call, Reply, Route
from refluxo.api.models import ErrorBody, RunPath
from refluxo.api.openapi import openapi_document
from refluxo.api.routes import ROUTES
from refluxo.runtime.errors import BadRequest
from tests.fuzz.conftest import (
    API_KEY,
    MAX_BODY_BYTES,
    MODES,
    SEEDED_RUNS,
    STEP_TOKEN,
    FuzzTarget,
    can_negate,
    encode_cursor,
    fuzz_operation,
    fuzz_sequences,
    read_state,
    run_coverage_phase,
    run_stateful_phase,
)


def step_body(**fields: Any) -> str:
    return json.dumps({"runId": "seed-active", "version": 0, **fields})


HUGE = json.dumps({"workflow": "chain", "input": "x" * MAX_BODY_BYTES})
EXAMPLES = 25
"""Hypothesis examples per operation and mode (18 pairs)."""
SEQUENCES = 25
SCENARIOS = 25
"""Stateful scenarios (up to 8 linked requests each)."""

DOCUMENT = openapi_document(ROUTES)
LABELS = [f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item]


FUZZ_PAIRS = [
    pytest.param(f"{method.upper()} {path}", mode, id=f"{method.upper()} {path}-{mode.value}")
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    for mode in MODES
    if mode is GenerationMode.POSITIVE or can_negate(operation)
]

REACHED: dict[str, set[int]] = {
    "POST /runs": {201},
    "GET /runs": {200},
    "GET /runs/{runId}": {200},
    "GET /runs/{runId}/graph": {200},
    "POST /runs/{runId}/resume": {202},
    "POST /runs/{runId}/cancel": {200},
}
"""Statuses that valid requests must reach, thanks to the steering towards seeded runs."""


def requests_to(target: FuzzTarget, label: str) -> dict[int, int]:
    return {status: n for (name, status), n in target.tally.items() if name == label}


def test_the_app_serves_the_document(target: FuzzTarget) -> None:
    assert target.schema.raw_schema == DOCUMENT
    assert sorted(operation.label for operation in target.operations()) == sorted(LABELS)
    assert len(FUZZ_PAIRS) == 22  # no schema-violating request to /healthz, /openapi.json


def test_coverage_phase(target: FuzzTarget) -> None:
    run_coverage_phase(target)
    assert not target.failures
    for label in LABELS:
        assert requests_to(target, label), f"no request to {label}"
    # Undocumented methods were sent, and refused.
    assert requests_to(target, "DELETE /runs") == {405: 1}
    assert requests_to(target, "GET /tasks/step") == {405: 1}
    # Boundary values past the document's limits (a limit of 0 or 201...) are refused.
    assert 400 in requests_to(target, "GET /runs")


@pytest.mark.parametrize(("label", "mode"), FUZZ_PAIRS)
def test_fuzz_operation(target: FuzzTarget, label: str, mode: GenerationMode) -> None:
    fuzz_operation(target, target.operation(label), mode, max_examples=EXAMPLES, derandomize=True)
    assert not target.failures
    statuses = requests_to(target, label)
    assert sum(statuses.values()) >= (1 if label in ("GET /healthz", "GET /openapi.json") else 5)
    if mode is GenerationMode.POSITIVE:
        assert REACHED.get(label, set()) <= set(statuses), statuses
        if label == "POST /tasks/step":
            assert target.outcomes["committed"] > 0, target.outcomes


def test_fuzz_sequences(target: FuzzTarget) -> None:
    fuzz_sequences(target, max_examples=SEQUENCES, derandomize=True)
    assert not target.failures
    assert target.tally.total() >= 2 * SEQUENCES


def test_stateful_phase_follows_the_links(target: FuzzTarget) -> None:
    document_links = {
        name
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
        for response in operation["responses"].values()
        for name in response.get("links", {})
    }
    assert document_links == {"GetRun", "ResumeRun", "CancelRun"}
    run_stateful_phase(target, max_examples=SCENARIOS, derandomize=True)
    assert not target.failures
    assert target.tally.total() >= 2 * SCENARIOS
    # Linked requests reached real runs: a start, then reads, resumes or cancels of it.
    assert 201 in requests_to(target, "POST /runs")
    reached = requests_to(target, "GET /runs/{runId}") | requests_to(
        target, "POST /runs/{runId}/cancel"
    )
    assert 200 in reached, target.tally


# -- scenarios that must be reached -----------------------------------------------------


def call(
    target: FuzzTarget,
    label: str,
    *,
    run_id: str | None = None,
    body: Any = NOT_SET,
    query: dict[str, Any] | None = None,
) -> Any:
    """One explicit request through the harness (checked like a generated one)."""
    operation = target.operation(label)
    credentials = (
        {"Authorization": f"Bearer {STEP_TOKEN}"}
        if label.startswith("POST /tasks/")
        else {"X-API-Key": API_KEY}
    )
    case = operation.Case(
        path_parameters={"runId": run_id} if run_id is not None else None,
        headers=credentials,
        query=query,
        body=body,
        media_type="application/json" if body is not NOT_SET else None,
    )
    response = target.execute(case)
    return response.status_code, response.json()


def test_resume_and_deliver_a_paused_run(target: FuzzTarget) -> None:
    version = target.runtime.service.get("seed-paused").version
    resume = "POST /runs/{runId}/resume"
    stale = {"payload": {"ok": True}, "version": version + 1}
    assert call(target, resume, run_id="seed-paused", body=stale)[0] == 409
    status, run = call(
        target, resume, run_id="seed-paused", body={"payload": {"ok": True}, "version": version}
    )
    assert (status, run["status"], run["version"]) == (202, "active", version + 1)
    # The same resume again is a retry; another payload conflicts.
    assert call(target, resume, run_id="seed-paused", body={"payload": {"ok": True}})[0] == 202
    assert call(target, resume, run_id="seed-paused", body={"payload": {"ok": False}})[0] == 409

    (delivery,) = [d for d in target.runtime.scheduler.pending() if d.run_id == "seed-paused"]
    step = {"runId": "seed-paused", "version": delivery.version, "dueAt": delivery.due_at}
    assert call(target, "POST /tasks/step", body=step) == (
        200,
        {"outcome": "committed", "steps": 1},
    )
    assert call(target, "POST /tasks/step", body=step)[1]["outcome"] == "stale"
    status, run = call(target, "GET /runs/{runId}", run_id="seed-paused")
    assert status == 200
    assert [(e["nodeId"], e["output"]) for e in run["timeline"]] == [("ask", {"ok": True})]


def test_cancel_start_list_and_read(target: FuzzTarget) -> None:
    cancel = "POST /runs/{runId}/cancel"
    status, run = call(target, cancel, run_id="seed-active", body={"reason": "fuzzed"})
    assert (status, run["status"]) == (200, "failed")
    assert call(target, cancel, run_id="seed-active", body={})[0] == 409
    assert call(target, cancel, run_id="seed-completed")[0] == 409
    assert call(target, cancel, run_id="nothing-here")[0] == 404

    start = "POST /runs"
    same = {"workflow": "chain", "input": {"n": 1}, "runId": "seed-completed"}
    assert call(target, start, body=same)[0] == 200
    assert call(target, start, body={**same, "input": {"n": 9}})[0] == 409
    assert call(target, start, body={"workflow": "nope"})[0] == 404
    status, run = call(target, start, body={"workflow": "loop", "runId": "fresh-1"})
    assert (status, run["runId"], run["status"]) == (201, "fresh-1", "active")
    step = {"runId": "fresh-1", "version": 0}
    assert call(target, "POST /tasks/step", body=step)[1]["outcome"] == "committed"

    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2}
    while True:
        status, page = call(target, "GET /runs", query=query)
        assert status == 200
        seen.extend(run["runId"] for run in page["runs"])
        if page["nextCursor"] is None:
            break
        query = {"limit": 2, "cursor": page["nextCursor"]}
    assert sorted(seen) == sorted([*SEEDED_RUNS, "fresh-1"])

    timeline = {"timelineAfter": 10, "timelineLimit": 5}
    status, run = call(target, "GET /runs/{runId}", run_id="seed-loop", query=timeline)
    assert [entry["seq"] for entry in run["timeline"]] == [11, 12, 13, 14, 15]


@pytest.mark.parametrize(
    ("method", "path", "data", "headers", "status"),
    [
        ("POST", "/runs", b'{"workflow": ', {}, 400),
        ("POST", "/runs", b'["chain"]', {}, 400),
        ("POST", "/runs", HUGE, {}, 413),
        ("POST", "/runs/seed-paused/resume", b"\xff\xfe", {}, 400),
        ("POST", "/runs/seed-paused/resume", b'{"version": "1"}', {}, 400),
        ("POST", "/runs/seed-active/cancel", b'{"reason": 7}', {}, 400),
        ("GET", "/runs/seed-paused", b"", {"X-API-Key": "wrong-key-0123456789"}, 401),
        ("POST", "/tasks/step", b'{"runId": "seed-active", "version": 0}', {}, 401),
        ("POST", "/tasks/step", b'{"runId": "seed-active", "version": -1}', None, 400),
        ("GET", "/runs/seed-paused/timeline", b"", {}, 404),
        ("DELETE", "/runs/seed-paused", b"", {}, 405),
        # Found by fuzzing, fixed in refluxo/api (parsing.py, models.py, openapi.py):
        ("POST", "/runs", b'{"workflow": "chain", "input": NaN}', {}, 400),
        ("POST", "/runs", b'{"workflow": "chain", "input": [-Infinity]}', {}, 400),
        ("POST", "/runs", b'{"workflow": "chain", "input": 1e999}', {}, 400),
        ("POST", "/runs", b'{"workflow": "chain", "input": "\\ud800"}', {}, 400),
        ("POST", "/runs/seed-paused/resume", b'{"payload": {"ok": "\\udfff"}}', {}, 400),
        ("POST", "/runs", b'{"workflow": "chain", "runId": "x1\\n"}', {}, 400),
        ("POST", "/tasks/step", step_body(dueAt=1e30), None, 400),
        ("POST", "/tasks/step", step_body(dueAt=2**63), None, 400),
        ("POST", "/tasks/step", step_body(hop=2**62 + 1), None, 400),
        ("POST", "/tasks/step", step_body(version=2**64), None, 400),
        ("GET", f"/runs/seed-loop?timelineAfter={2**62 + 1}", b"", {}, 400),
        ("POST", "/runs/seed-paused/cancel", b"\r", {}, 400),
        ("POST", "/runs/seed-paused/resume", b" \n", {}, 400),
    ],
)
def test_malformed_requests_are_rejected_and_change_nothing(
    target: FuzzTarget,
    method: str,
    path: str,
    data: bytes | str,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    if headers is None:
        headers = {"Authorization": f"Bearer {STEP_TOKEN}"}
    elif not headers and not path.startswith("/tasks/"):
        headers = {"X-API-Key": API_KEY}
    raw = data.encode() if isinstance(data, str) else data
    response = target.send_raw(method, path, data=raw, headers=headers)
    assert response.status_code == status  # send_raw checked the body and the state
    assert response.json()["error"]["message"]


def deep(depth: int, opening: str = "[") -> str:
    closing = "]" if opening == "[" else "}"
    return opening * depth + "1" + closing * depth


CALLER = {"X-API-Key": API_KEY}
SCHEDULER = {"Authorization": f"Bearer {STEP_TOKEN}"}
JSON_ROUTES = [
    ("POST", "/runs", "workflow", "chain", CALLER),
    ("POST", "/runs/seed-paused/resume", "payload", None, CALLER),
    ("POST", "/runs/seed-active/cancel", "reason", None, CALLER),
    ("POST", "/tasks/step", "runId", "seed-active", SCHEDULER),
]
"""Every operation that reads a JSON body: where a nested value goes, with its credential."""


def _deep_body(field: str, value: Any, depth: int, opening: str) -> bytes:
    """A body for a JSON route holding a value nested ``depth`` levels in ``extra``."""
    body = json.dumps({field: value, **({"version": 0} if field == "runId" else {})})
    return (body[:-1] + ', "extra": ' + deep(depth, opening) + "}").encode()


@pytest.mark.parametrize(("method", "path", "field", "value", "headers"), JSON_ROUTES)
@pytest.mark.parametrize("depth", [199, 600])
@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_json_is_400_on_every_json_route(
    target: FuzzTarget,
    method: str,
    path: str,
    field: str,
    value: Any,
    headers: dict[str, str],
    depth: int,
    opening: str,
) -> None:
    """Found by hand: from 199 levels a value the stores keep but cannot read back (a 500
    on every later read). Deeper still (a RecursionError past ~1,000 levels, bodies over
    this harness' 4 KiB limit): ``tests/api/test_validation.py``."""
    data = _deep_body(field, value, depth, opening)
    assert len(data) <= MAX_BODY_BYTES
    response = target.send_raw(method, path, data=data, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "limit_exceeded"


NASTY: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    # A web page may send these to any address without asking (CSRF), with no credential
    # the local server could tell apart: refused unless declared JSON.
    (
        "POST",
        "/runs",
        b'{"workflow": "chain"}',
        {**CALLER, "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/runs/seed-active/cancel",
        b"reason=csrf",
        {**CALLER, "Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/runs/seed-paused/resume",
        b'--b\r\nContent-Disposition: form-data; name="payload"\r\n\r\n1\r\n--b--\r\n',
        {**CALLER, "Content-Type": "multipart/form-data; boundary=b"},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/runs/seed-active/cancel",
        b"",
        {**CALLER, "Origin": "https://evil.example"},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/tasks/step",
        b'{"runId": "seed-active", "version": 0}',
        {**SCHEDULER, "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    # DNS rebinding: the page's own name, resolved to 127.0.0.1.
    ("GET", "/runs", b"", {**CALLER, "Host": "attacker.example"}, 421, "misdirected_request"),
    (
        "POST",
        "/runs",
        b'{"workflow": "chain"}',
        {**CALLER, "Host": "attacker.example:80"},
        421,
        "misdirected_request",
    ),
    ("GET", "/healthz", b"", {"Host": "127.0.0.1.nip.io"}, 421, "misdirected_request"),
    # Integers are ASCII digits: int() reads these as 5, 5, 5, 5 and 10.
    ("GET", "/runs?limit=%D9%A5", b"", CALLER, 400, "bad_request"),
    ("GET", "/runs?limit=%EF%BC%95", b"", CALLER, 400, "bad_request"),
    ("GET", "/runs/seed-loop?timelineLimit=%205", b"", CALLER, 400, "bad_request"),
    ("GET", "/runs/seed-loop?timelineAfter=+5", b"", CALLER, 400, "bad_request"),
    ("GET", "/runs/seed-loop?timelineLimit=1_0", b"", CALLER, 400, "bad_request"),
    # A cursor that decodes to deeply nested JSON (a RecursionError, 500), or is too long.
    (
        "GET",
        "/runs?cursor=" + "W" * 2000,
        b"",
        CALLER,
        400,
        "bad_request",
    ),
    (
        "GET",
        "/runs?cursor=" + base64.urlsafe_b64encode(b"[" * 5000).decode(),
        b"",
        CALLER,
        400,
        "bad_request",
    ),
    (
        "GET",
        "/runs?cursor=" + base64.urlsafe_b64encode(b"[" * 300).decode(),
        b"",
        CALLER,
        400,
        "bad_request",
    ),
    # The document says 400 for a version out of range, on every route that takes one.
    (
        "POST",
        "/runs/seed-paused/resume",
        b'{"payload": 1, "version": -1}',
        CALLER,
        400,
        "bad_request",
    ),
    (
        "POST",
        "/runs/seed-paused/resume",
        b'{"payload": 1, "version": 1e400}',
        CALLER,
        400,
        "bad_request",
    ),
    (
        "POST",
        "/runs",
        b'{"workflow": "chain", "input": {"x": Infinity}}',
        CALLER,
        400,
        "bad_request",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "data", "headers", "status", "code"),
    [pytest.param(*case, id=f"{case[4]}-{i}") for i, case in enumerate(NASTY)],
)
def test_nasty_requests_are_refused_as_json_and_change_nothing(
    target: FuzzTarget,
    method: str,
    path: str,
    data: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = target.send_raw(method, path, data=data, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert not target.failures


def test_escaped_astral_characters_are_accepted(target: FuzzTarget) -> None:
    # A surrogate pair is one character (U+1F600); only lone surrogates are refused.
    data = b'{"workflow": "chain", "input": "\\ud83d\\ude00", "runId": "astral"}'
    response = target.send_raw("POST", "/runs", data=data, headers={"X-API-Key": API_KEY})
    assert response.status_code == 201
    record = target.runtime.store.load_run("astral")
    assert record is not None
    assert record.input == "\U0001f600"


KNOWN_REPRODUCERS: dict[str, tuple[str, str, bytes]] = {
    "html-405-for-unrouted-method": ("TRACE", "/runs", b""),
    "html-404-for-newline-in-path": ("GET", "/runs/seed%0Apaused", b""),
    "500-for-cursor-beyond-int64": ("GET", f"/runs?cursor={encode_cursor(2**64, 'x')}", b""),
    "definition-stored-by-rejected-start": (
        "POST",
        "/runs",
        b'{"workflow": "unstarted", "runId": "seed-paused"}',
    ),
}


@pytest.mark.parametrize("name", sorted(KNOWN_REPRODUCERS))
def test_formerly_known_issues_stay_fixed(target: FuzzTarget, name: str) -> None:
    """Each bug the fuzzer found, replayed: a clear JSON 4xx that changed nothing."""
    method, path, data = KNOWN_REPRODUCERS[name]
    target.send_raw(method, path, data=data, headers={"X-API-Key": API_KEY})
    assert not target.known
    assert not target.failures


# -- the harness notices what it must ---------------------------------------------------


def swap_handler(operation_id: str, handler: Any) -> tuple[Route, ...]:
    """The API's routes, one handler replaced."""
    assert operation_id in {route.operation_id for route in ROUTES}
    return tuple(
        dataclasses.replace(route, handler=handler) if route.operation_id == operation_id else route
        for route in ROUTES
    )


def leaky_cancel(call: Call) -> Reply:
    """Cancels the run, then refuses the request anyway."""
    call.service.cancel(call.path_as(RunPath).run_id, "leaked")
    raise BadRequest("refused after all")


def silent_health(call: Call) -> Reply:
    """Answers the health check with an error that says nothing."""
    return Reply(ErrorBody.of("", ""), 400)


def test_harness_catches_a_rejection_that_changed_state(tmp_path: Path) -> None:
    target = FuzzTarget.build(tmp_path, routes=swap_handler("cancelRun", leaky_cancel))
    try:
        before = read_state(target.runtime)
        with pytest.raises(AssertionError, match="yet the database changed"):
            call(target, "POST /runs/{runId}/cancel", run_id="seed-active")
        assert read_state(target.runtime) != before
    finally:
        target.close()


def test_harness_catches_an_undocumented_empty_error(tmp_path: Path) -> None:
    target = FuzzTarget.build(tmp_path, routes=swap_handler("health", silent_health))
    try:
        with pytest.raises(AssertionError) as caught:
            call(target, "GET /healthz")
        report = str(caught.value)
        assert "error.message missing or empty" in report
        assert "Undocumented status code" in report
    finally:
        target.close()
