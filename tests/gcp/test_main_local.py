"""main.py without cloud settings: the embedded default behind functions-framework."""

from __future__ import annotations

import base64
import http.client
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from refluxo.api.client import HttpClient
from tests.support.emulators import start_functions_framework
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_main_serves_the_embedded_default_when_no_cloud_setting_exists(tmp_path: Path) -> None:
    env = {"REFLUXO_DB": str(tmp_path / "local.db"), "PYTHONPATH": str(ROOT)}
    for name in ("REFLUXO_BACKEND", "GOOGLE_CLOUD_PROJECT", "REFLUXO_TASKS_QUEUE"):
        env[name] = ""
    server = start_functions_framework(ROOT / "main.py", "api", env=env)
    try:
        client = HttpClient(server.url)
        run = client.start("loop", {"items": [1, 2]})
        wait_until(lambda: client.get(run["runId"])["status"] == "completed", 30, "the run")
        assert client.get(run["runId"])["resultCount"] == 7  # start, 3 x each, 2 x square, sum
    finally:
        server.stop()


def test_async_executors_await_real_io_behind_functions_framework(tmp_path: Path) -> None:
    env = {
        "REFLUXO_DB": str(tmp_path / "local.db"),
        "REFLUXO_APP": "tests.support.e2e_app:app",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("REFLUXO_BACKEND", "GOOGLE_CLOUD_PROJECT", "REFLUXO_TASKS_QUEUE"):
        env[name] = ""
    server = start_functions_framework(ROOT / "main.py", "api", env=env)
    try:
        client = HttpClient(server.url)
        run = client.start("awaiting")
        wait_until(lambda: client.get(run["runId"])["status"] == "completed", 30, "the run")
        timeline = client.get(run["runId"])["timeline"]
        assert timeline[-1]["output"] == {"answer": 42, "slept": ["a", "b"]}
    finally:
        server.stop()


def test_a_misconfigured_deployment_fails_at_start_naming_what_is_missing() -> None:
    env = {**os.environ, "REFLUXO_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "acme"}
    env.pop("REFLUXO_REGION", None)
    result = subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "REFLUXO_REGION, REFLUXO_TASKS_QUEUE, REFLUXO_STEP_URL" in result.stderr


# -- the same rules as `refluxo serve`, on the embedded default ----------------------------


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"REFLUXO_DB": str(tmp_path / "local.db"), "PYTHONPATH": str(ROOT), **extra}
    for name in (
        "REFLUXO_BACKEND",
        "GOOGLE_CLOUD_PROJECT",
        "REFLUXO_TASKS_QUEUE",
        "REFLUXO_API_KEY",
    ):
        env.setdefault(name, "")
    return env


def call(
    url: str, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, str, Any]:
    """One request as sent (urllib would add a Content-Type to a body); status, type, JSON."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = connection.getresponse()
        data = response.read()
        content_type = response.getheader("Content-Type") or ""
        return (
            response.status,
            content_type,
            json.loads(data) if content_type == "application/json" else data,
        )
    finally:
        connection.close()


def rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "results", "deliveries", "definitions")
        }


def test_main_on_the_embedded_default_guards_like_the_local_server(tmp_path: Path) -> None:
    server = start_functions_framework(ROOT / "main.py", "api", env=embedded_env(tmp_path))
    try:
        client = HttpClient(server.url)
        run = client.start("content-approval", {"title": "T"})
        wait_until(lambda: client.get(run["runId"])["status"] == "paused", 30, "the pause")
        before = rows(tmp_path / "local.db")
        # 300 forged step deliveries, each with another hop (they used to add 303 rows).
        for hop in range(300):
            body = json.dumps({"runId": run["runId"], "version": 0, "dueAt": 2**40, "hop": hop})
            status, _, answer = call(
                server.url, "POST", "/tasks/step", body.encode(), Content_Type="application/json"
            )
            assert status == 403, answer
        # What a web page can send without asking: a text/plain start, a form cancel.
        status, _, answer = call(
            server.url, "POST", "/runs", b'{"workflow": "loop"}', Content_Type="text/plain"
        )
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type")
        status, _, answer = call(
            server.url,
            "POST",
            f"/runs/{run['runId']}/cancel",
            b"reason=csrf",
            Content_Type="application/x-www-form-urlencoded",
        )
        assert (status, answer["error"]["code"]) == (415, "unsupported_media_type")
        # A rebound name.
        status, _, answer = call(server.url, "GET", "/runs", Host="attacker.example:8080")
        assert (status, answer["error"]["code"]) == (421, "misdirected_request")
        # A URL far over 64 KiB: gunicorn reads any request line, the API answers JSON.
        status, content_type, answer = call(server.url, "GET", "/runs/" + "x" * 100_000)
        assert (status, content_type) == (404, "application/json")
        assert rows(tmp_path / "local.db") == before
        assert client.get(run["runId"])["status"] == "paused"
    finally:
        server.stop()


def cloud_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": "acme",
        "REFLUXO_REGION": "europe-west1",
        "REFLUXO_TASKS_QUEUE": "steps",
        "REFLUXO_STEP_URL": "https://dispatcher.example.run.app/tasks/step",
        "REFLUXO_TASKS_SERVICE_ACCOUNT": "invoker@acme.iam.gserviceaccount.com",
        "REFLUXO_OIDC_AUDIENCE": "https://dispatcher.example.run.app",
        **extra,
    }
    for name in ("REFLUXO_API_KEY", "REFLUXO_AUTH", "FUNCTION_TARGET", "REFLUXO_ROUTES"):
        if name not in extra:
            env.pop(name, None)
    return env


def import_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("target", ["api", None])
def test_the_cloud_api_without_a_key_refuses_to_start(target: str | None) -> None:
    """An unset REFLUXO_API_KEY used to mean, silently, no application-level check."""
    result = import_main(cloud_env(**({"FUNCTION_TARGET": target} if target else {})))
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "REFLUXO_API_KEY" in result.stderr
    assert "REFLUXO_AUTH=iam" in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        {"FUNCTION_TARGET": "api", "REFLUXO_AUTH": "iam"},
        {"FUNCTION_TARGET": "api", "REFLUXO_API_KEY": "k" * 32},
        {"FUNCTION_TARGET": "step"},  # the dispatcher serves no caller route
        {"FUNCTION_TARGET": "on_message"},  # nor do the events
        {"REFLUXO_ROUTES": "dispatcher"},  # as Terraform declares each function's routes
        {"REFLUXO_ROUTES": "events"},
        {"REFLUXO_ROUTES": "api", "REFLUXO_API_KEY": "k" * 32},
    ],
)
def test_the_cloud_backend_starts_when_the_callers_are_guarded_or_absent(
    extra: dict[str, str],
) -> None:
    result = import_main(cloud_env(**extra))
    assert result.returncode == 0, result.stderr


def test_declared_routes_decide_over_the_entry_point() -> None:
    # The API function declared by Terraform needs its key even if the target says "step".
    result = import_main(cloud_env(REFLUXO_ROUTES="api", FUNCTION_TARGET="step"))
    assert result.returncode != 0
    assert "REFLUXO_API_KEY" in result.stderr
    unknown = import_main(cloud_env(REFLUXO_ROUTES="everything"))
    assert unknown.returncode != 0
    assert "REFLUXO_ROUTES must be one of api, dispatcher, events" in unknown.stderr


def test_main_without_a_key_refuses_a_listener_beyond_this_machine(tmp_path: Path) -> None:
    result = import_main({**os.environ, **embedded_env(tmp_path, REFLUXO_HOST="0.0.0.0")})
    assert result.returncode != 0
    assert "REFLUXO_API_KEY" in result.stderr


# -- Pub/Sub pushes through main.on_message ------------------------------------------------


def cloud_event(data: Any, event_id: str) -> tuple[bytes, dict[str, str]]:
    """A CloudEvent in binary mode, as Eventarc delivers a Pub/Sub push."""
    headers = {
        "Content-Type": "application/json",
        "ce-id": event_id,
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/runs",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
    }
    return json.dumps(data).encode(), headers


def message(event_id: str, data: bytes | str | None, **attributes: str) -> dict[str, Any]:
    body: dict[str, Any] = {"messageId": event_id, "attributes": attributes}
    if isinstance(data, bytes):
        body["data"] = base64.b64encode(data).decode()
    elif data is not None:
        body["data"] = data
    return {"message": body, "subscription": "projects/p/subscriptions/s"}


def deep(depth: int) -> bytes:
    return b'{"workflow": "loop", "input": ' + b"[" * depth + b"]" * depth + b"}"


MALFORMED_PUSHES: dict[str, Any] = {
    "deep": message("deep", deep(100_000)),
    "store-deep": message("store-deep", deep(199)),
    "surrogate": message("surrogate", b'{"workflow": "loop", "input": "\\ud800"}'),
    "nan": message("nan", b'{"workflow": "loop", "input": NaN}'),
    "infinity": message("infinity", b'{"workflow": "loop", "input": [-Infinity]}'),
    "not-json": message("not-json", b"{nope"),
    "bad-base64": message("bad-base64", "%%%"),
    "oversized": message("oversized", "A" * 1_500_000),
    "unknown-action": message("unknown-action", b'{"action": "explode"}'),
    "negative-version": message(
        "negative-version", b'{"action": "resume", "runId": "x", "version": -1}'
    ),
    "no-message": {"subscription": "projects/p/subscriptions/s"},
    "not-an-object": ["a", "list"],
}


def test_every_malformed_push_is_acknowledged_with_one_line_naming_why(tmp_path: Path) -> None:
    """Deep nesting and lone surrogates answered 500, so Pub/Sub redelivered them until
    the dead-letter topic; NaN and Infinity silently became null."""
    server = start_functions_framework(
        ROOT / "main.py",
        "on_message",
        env=embedded_env(tmp_path, FUNCTION_TARGET="on_message"),
        signature_type="cloudevent",
    )
    try:
        for event_id, data in MALFORMED_PUSHES.items():
            body, headers = cloud_event(data, event_id)
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
            finally:
                connection.close()
            assert response.status == 200, (event_id, server.process.log_tail())
        log = server.process.log_path.read_text(errors="replace")
        for event_id in MALFORMED_PUSHES:
            lines = [line for line in log.splitlines() if f"message {event_id} " in line]
            assert len(lines) == 1, (event_id, lines)
            assert "rejected and acknowledged" in lines[0]
        assert "Traceback" not in log
        assert rows(tmp_path / "local.db")["runs"] == 0
    finally:
        server.stop()


def test_the_dispatcher_function_serves_no_caller_route(tmp_path: Path) -> None:
    env = embedded_env(tmp_path, FUNCTION_TARGET="step")
    server = start_functions_framework(ROOT / "main.py", "step", env=env)
    try:
        assert call(server.url, "GET", "/healthz")[0] == 200
        assert call(server.url, "GET", "/runs")[0] == 404
        assert call(server.url, "POST", "/runs", b"{}", Content_Type="application/json")[0] == 404
        step = json.dumps({"runId": "x", "version": 0}).encode()
        assert (
            call(server.url, "POST", "/tasks/step", step, Content_Type="application/json")[0] == 403
        )
    finally:
        server.stop()
