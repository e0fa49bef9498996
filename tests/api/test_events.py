"""Pub/Sub pushes: every malformed one is acknowledged with one log line naming why; only a
transient failure raises (to be redelivered); JSON is read exactly as over HTTP.

Each case here answered a 500 before (so Pub/Sub redelivered it until the dead-letter
topic), or was accepted with a different meaning than over HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from refluxo.api.events import MAX_MESSAGE_BYTES, EventOutcome, handle_message, handle_push
from refluxo.api.http import HttpApi
from refluxo.api.parsing import MAX_JSON_DEPTH
from refluxo.api.server import create_wsgi_app
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from tests.api.support import database


def push(data: bytes | str | None = None, **attributes: Any) -> dict[str, Any]:
    """A Pub/Sub push envelope, as the CloudEvent's data carries it."""
    message: dict[str, Any] = {"messageId": "m-1", "attributes": attributes}
    if isinstance(data, bytes):
        message["data"] = base64.b64encode(data).decode()
    elif data is not None:
        message["data"] = data
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


def deep(depth: int) -> bytes:
    return b'{"workflow": "chain", "input": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


MALFORMED: list[Any] = [
    pytest.param(push(deep(100_000)), "nested more than", id="deep-100k"),
    pytest.param(push(deep(1_000)), "nested more than", id="deep-1000"),
    pytest.param(push(deep(199)), "nested more than", id="deep-199-unreadable-by-the-store"),
    pytest.param(push(b'{"workflow": "chain", "input": "\\ud800"}'), "surrogate", id="surrogate"),
    pytest.param(
        push(b'{"workflow": "chain", "input": {"a": "\\udfff"}}'), "surrogate", id="surr2"
    ),
    pytest.param(push(b'{"workflow": "chain", "input": NaN}'), "NaN is not JSON", id="nan"),
    pytest.param(push(b'{"workflow": "chain", "input": [Infinity]}'), "Infinity", id="inf"),
    pytest.param(push(b'{"workflow": "chain", "input": -1e999}'), "out of range", id="overflow"),
    pytest.param(push(b"{not json"), "not JSON", id="not-json"),
    pytest.param(push(b"\xed\xa0\x80"), "not UTF-8", id="utf8-surrogate-bytes"),
    pytest.param(push(b"[1, 2]"), "JSON object", id="array"),
    pytest.param(push("not base64!"), "not base64", id="bad-base64"),
    pytest.param(push("aGVsbG8"), "not base64", id="bad-padding"),
    pytest.param(push("\ud800"), "not base64", id="surrogate-in-base64"),
    pytest.param({"message": {"data": 12}}, "not base64", id="data-not-a-string"),
    pytest.param(push("A" * (4 * MAX_MESSAGE_BYTES // 3 + 8)), "over", id="oversized"),
    pytest.param(push(b'{"action": "explode"}'), "unknown action", id="unknown-action"),
    pytest.param(push(b'{"action": ["start"]}'), "unknown action", id="action-not-a-string"),
    pytest.param(push(b'{"workflow": "chain"}', action="x"), "unknown action", id="attr-action"),
    pytest.param(push(b"{}", workflow="\ud800"), "unknown workflow", id="surrogate-workflow"),
    pytest.param(push(b"{}", workflow="chain", runId="\ud800"), "runId must", id="surr-run-id"),
    pytest.param(
        push(b'{"action": "resume", "runId": "p", "version": -1}'), "non-negative", id="v-neg"
    ),
    pytest.param(
        push(b'{"action": "resume", "runId": "p", "version": 9223372036854775808}'),
        "non-negative",
        id="v-huge",
    ),
    pytest.param(push(b'{"action": "resume", "runId": "p", "version": 1.5}'), "integer", id="v-f"),
    pytest.param(push(b'{"action": "resume", "runId": "p", "version": true}'), "integer", id="vb"),
    pytest.param(None, "not a Pub/Sub push", id="no-data"),
    pytest.param("a string", "not a Pub/Sub push", id="string-data"),
    pytest.param([1, 2], "not a Pub/Sub push", id="list-data"),
    pytest.param({}, "no Pub/Sub message", id="no-message"),
    pytest.param({"message": "hello"}, "no Pub/Sub message", id="message-not-an-object"),
    pytest.param({"message": {"attributes": [1]}}, "attributes", id="attributes-not-an-object"),
    pytest.param({"message": {"attributes": {"runId": 5}}}, "attributes", id="attribute-not-text"),
]


@pytest.fixture
def paused(runtime: EmbeddedRuntime) -> str:
    runtime.service.start("approval", run_id="p")
    runtime.scheduler.drain()
    return "p"


@pytest.mark.parametrize(("envelope", "fragment"), MALFORMED)
def test_a_malformed_push_is_acknowledged_with_one_line_naming_why(
    runtime: EmbeddedRuntime,
    paused: str,
    caplog: pytest.LogCaptureFixture,
    envelope: Any,
    fragment: str,
) -> None:
    before = database(runtime)
    with caplog.at_level(logging.INFO, logger="refluxo"):
        result = handle_push(runtime.service, envelope, "event-1")  # returns: acknowledged
    assert result.outcome is EventOutcome.REJECTED
    assert fragment in (result.reason or "")
    lines = [record for record in caplog.records if record.name.startswith("refluxo")]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    (line,) = lines
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert "rejected and acknowledged" in message
    assert "\n" not in message
    message.encode("utf-8")  # no lone surrogate reaches the log
    assert database(runtime) == before


def test_a_well_formed_push_logs_one_line_too(
    runtime: EmbeddedRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="refluxo"):
        result = handle_push(runtime.service, push(b'{"input": 5}', workflow="chain"), "e")
    assert result.outcome is EventOutcome.STARTED
    assert result.run_id == "msg-m-1"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("refluxo.events")]
    assert messages == ["message m-1: started msg-m-1"]


def test_an_empty_push_message_uses_the_event_id_and_attributes(runtime: EmbeddedRuntime) -> None:
    result = handle_push(runtime.service, {"message": {"attributes": {"workflow": "chain"}}}, "e9")
    assert result.outcome is EventOutcome.STARTED
    assert result.run_id == "msg-e9"


def test_a_transient_failure_raises_so_the_message_is_redelivered(
    runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*_: object, **__: object) -> None:
        raise TransientError("database is locked")

    monkeypatch.setattr(runtime.store, "load_run", unavailable)
    with pytest.raises(TransientError):
        handle_push(runtime.service, push(b'{"action": "cancel", "runId": "r"}'), "e")


@pytest.mark.parametrize(
    "body",
    [
        b'{"workflow": "chain", "input": NaN}',
        b'{"workflow": "chain", "input": {"x": -Infinity}}',
        b'{"workflow": "chain", "input": 1e400}',
        b'{"workflow": "chain", "input": "\\ud800"}',
        b'{"workflow": "chain", "input": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}",
    ],
)
def test_json_is_refused_alike_over_http_and_pubsub(runtime: EmbeddedRuntime, body: bytes) -> None:
    """Over Pub/Sub, NaN and Infinity used to become null in the stored input."""
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        over_http = client.post("/runs", data=body, content_type="application/json")
    assert over_http.status_code == 400
    over_pubsub = handle_message(runtime.service, body, {}, "m")
    assert over_pubsub.outcome is EventOutcome.REJECTED
    assert runtime.service.list().runs == []


def test_json_up_to_the_depth_limit_is_accepted_alike(runtime: EmbeddedRuntime) -> None:
    depth = MAX_JSON_DEPTH - 1  # the body object is the first level
    body = b'{"workflow": "chain", "input": ' + b"[" * depth + b"]" * depth + b"}"
    client: FlaskClient
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        assert client.post("/runs", data=body, content_type="application/json").status_code == 201
    assert handle_message(runtime.service, body, {}, "m").outcome is EventOutcome.STARTED


def test_a_resume_at_a_version_is_checked_like_over_http(
    runtime: EmbeddedRuntime, paused: str
) -> None:
    version = runtime.service.get(paused).version
    body = {"action": "resume", "runId": paused, "payload": {"ok": True}, "version": version}
    result = handle_message(runtime.service, json.dumps(body).encode(), {}, "m")
    assert result.outcome is EventOutcome.RESUMED
