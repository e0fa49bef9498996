"""The events function (``on_message`` in ``main.py``) under functions-framework, served on
the embedded default: a push nested too deep for Python's JSON parser is rejected and
acknowledged like any malformed push, before functions-framework parses it as a CloudEvent.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import FunctionServer, start_functions_framework

ROOT = Path(__file__).resolve().parents[2]

PUSH_HEADERS = {
    "Content-Type": "application/json",
    "ce-specversion": "1.0",
    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    project = tmp_path_factory.mktemp("events")
    env = {
        "FUNCTION_TARGET": "on_message",
        "PYTHONPATH": str(ROOT),
        "REFLUXO_DB": str(project / "refluxo.db"),
    }
    server = start_functions_framework(ROOT / "main.py", "on_message", env=env)
    yield server
    server.stop()


def post(server: FunctionServer, body: bytes, event_id: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers={**PUSH_HEADERS, "ce-id": event_id})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": ' * 30_000 + b"1" + b"}" * 30_000,
        b"[" * 200_000,
        b'{"message": {"data": "", "attributes": {"a": ' + b"[" * 70 + b"]" * 70 + b"}}}",
    ],
    ids=["deep-object", "unclosed-arrays", "deep-attribute"],
)
def test_a_push_nested_too_deep_is_rejected_and_acknowledged(
    events: FunctionServer, body: bytes
) -> None:
    status, answer = post(events, body, "deep-1")
    assert status == 200, answer[-2000:]
    log = events.process.log_path.read_text(errors="replace")
    assert "message deep-1 rejected and acknowledged: the push nests more than 64" in log
    assert "RecursionError" not in log
    assert "Traceback" not in log


def test_a_push_within_the_depth_still_reaches_the_events_function(events: FunctionServer) -> None:
    data = base64.b64encode(json.dumps({"action": "start", "workflow": "nope"}).encode())
    push = {"message": {"data": data.decode(), "messageId": "shallow-1"}}
    status, _ = post(events, json.dumps(push).encode(), "shallow-1")
    assert status == 200
    log = events.process.log_path.read_text(errors="replace")
    # Parsed and handled by on_message: the unknown workflow is its reason, not the depth.
    assert "message shallow-1 rejected and acknowledged: " in log
    assert "unknown workflow" in log.split("message shallow-1 rejected")[1].splitlines()[0].lower()
