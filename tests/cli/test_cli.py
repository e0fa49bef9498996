"""The refluxo command, on a temporary database."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refluxo.api.client import ApiError, HttpClient, ServerUnreachable
from refluxo.errors import LimitExceededError, WorkflowDefinitionError
from refluxo.host.cli import main
from refluxo.runtime import App
from tests.support.processes import stopped
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("REFLUXO_DB", str(tmp_path / "cli.db"))
    return CliRunner()


def test_run_pause_resume_status_list(cli: CliRunner) -> None:
    started = cli.invoke(
        main, ["run", "content-approval", "--input", '{"title": "Hi"}', "--run-id", "post-1"]
    )
    assert started.exit_code == 0, started.output
    assert "draft" in started.output
    assert "paused at 'review'" in started.output

    listed = cli.invoke(main, ["list", "--status", "paused"])
    assert "post-1" in listed.output

    resumed = cli.invoke(main, ["resume", "post-1", "--payload", '{"approved": true, "by": "me"}'])
    assert resumed.exit_code == 0, resumed.output
    assert "Published 'Hi' (approved by me)" in resumed.output
    assert "run post-1: completed" in resumed.output

    status = json.loads(cli.invoke(main, ["status", "post-1", "--json"]).output)
    assert status["status"] == "completed"
    assert [e["nodeId"] for e in status["timeline"]] == ["start", "draft", "review", "publish"]


def test_cancel_and_errors(cli: CliRunner) -> None:
    cli.invoke(main, ["run", "content-approval", "--run-id", "post-2"])
    cancelled = cli.invoke(main, ["cancel", "post-2", "--reason", "spam"])
    assert cancelled.exit_code == 0, cancelled.output
    assert "run post-2: failed (cancelled) at 'review': spam" in cancelled.output
    again = cli.invoke(main, ["resume", "post-2", "--payload", "{}"])
    assert again.exit_code != 0
    assert "409 conflict" in again.output
    assert "not JSON" not in again.output
    bad = cli.invoke(main, ["run", "content-approval", "--input", "{oops"])
    assert bad.exit_code == 2
    assert "--input is not valid JSON" in bad.output
    unknown = cli.invoke(main, ["run", "nope"])
    assert unknown.exit_code != 0
    assert "unknown workflow 'nope'" in unknown.output


@pytest.mark.parametrize(
    ("text", "told"),
    [
        ('{"a": 1, "a": 2}', "key 'a' appears more than once"),
        ("NaN", "NaN is not JSON"),
        ("1e999", "out of range"),
        ('"\\ud800"', "lone UTF-16 surrogate"),
    ],
)
def test_input_and_payload_are_read_as_the_api_reads_a_body(
    cli: CliRunner, text: str, told: str
) -> None:
    """A repeated key was taken (the last value) by the command and refused by the API;
    ``NaN`` was sent and came back as the server's 400, exit 1 instead of a usage error."""
    for command in (["run", "loop", "--input", text], ["resume", "x", "--payload", text]):
        result = cli.invoke(main, command)
        assert result.exit_code == 2, result.output
        assert told in result.output


def test_validate_reports_problems_with_their_lines(cli: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(
        "{\n"
        '  "nodes": [\n'
        '    {"id": "a", "type": "notify", "data": {"message": "{{ nodes.a.output + }}"}},\n'
        '    {"id": "b", "type": "mystery"},\n'
        '    {"id": "c", "type": "notify", "data": {"message": "ok"}}\n'
        "  ],\n"
        '  "edges": [\n'
        '    {"source": "a", "target": "b"},\n'
        '    {"source": "b", "target": "ghost"}\n'
        "  ]\n"
        "}\n"
    )
    result = cli.invoke(main, ["validate", str(broken), "--app", "refluxo.examples.app:app"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(f"{broken}:3: error: node 'a' data.message" in line for line in lines)
    assert any(
        f"{broken}:4: error: Node definition not found for type: mystery (node 'b')" in line
        for line in lines
    )
    assert any(f"{broken}:5: warning: node 'c' is unreachable from 'a'" in line for line in lines)
    assert any(f"{broken}:9: error: edge target 'ghost' is not a node" in line for line in lines)


def test_validate_accepts_the_examples(cli: CliRunner) -> None:
    for file in sorted((ROOT / "refluxo" / "examples").glob("*.json")):
        result = cli.invoke(main, ["validate", str(file), "--app", "refluxo.examples.app:app"])
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith("ok")


def test_validate_invalid_json_points_at_the_line(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "nodes": [\n    {"id": "a",, }\n  ]\n}\n')
    result = cli.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3: error: invalid JSON" in result.output


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        (
            '{\n  "nodes": [{"id": "a", "type": "trigger"}],\n  "edges": [],\n  "nodes": []\n}\n',
            4,
            "nodes",
        ),
        ('{\n  "nodes": [\n    {"id": "a", "type": "trigger", "id": "b"}\n  ]\n}\n', 3, "id"),
        (
            '{"nodes": [{"id": "a", "type": "t",\n "data": {"m": 1, "x": {"m": 2},\n "m": 3}}]}',
            3,
            "m",
        ),
        ('{"nodes": [], "edges": [], "\\u006eodes": []}', 1, "nodes"),
    ],
)
def test_validate_refuses_a_key_given_twice_naming_it_and_its_second_line(
    cli: CliRunner, tmp_path: Path, text: str, line: int, key: str
) -> None:
    """Read as Python reads it, the last copy would win silently (the API refuses it too)."""
    twice = tmp_path / "twice.json"
    twice.write_text(text)
    result = cli.invoke(main, ["validate", str(twice)])
    assert result.exit_code == 1
    assert f"{twice}:{line}: error: invalid JSON: key {key!r} appears more than once" in (
        result.output
    )


def test_a_workflow_file_with_a_key_given_twice_is_refused_at_registration(
    tmp_path: Path,
) -> None:
    twice = tmp_path / "twice.json"
    twice.write_text('{\n"nodes": [{"id": "a", "type": "trigger"}],\n"nodes": []}')
    with pytest.raises(WorkflowDefinitionError, match=r"twice\.json:3: invalid JSON: key 'nodes'"):
        App().workflow("twice", twice)


def test_a_workflow_file_with_a_byte_order_mark_is_told_so(cli: CliRunner, tmp_path: Path) -> None:
    marked = tmp_path / "marked.json"
    marked.write_text('\ufeff{"nodes": [{"id": "a", "type": "trigger"}]}', encoding="utf-8")
    result = cli.invoke(main, ["validate", str(marked)])
    assert result.exit_code == 1
    assert f"{marked}:1: error: invalid JSON: the text starts with a byte order mark" in (
        result.output
    )
    with pytest.raises(WorkflowDefinitionError, match="byte order mark"):
        App().workflow("marked", marked)


def test_a_server_that_cannot_be_reached_is_an_error_line_not_a_traceback(
    cli: CliRunner,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli.invoke(main, ["status", "x", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach http://127.0.0.1:{port}: ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("url", "told"),
    [
        ("notaurl", "is not an http(s) URL with a host"),
        ("localhost:8080", "is not an http(s) URL with a host"),
        ("ftp://example.com", "is not an http(s) URL with a host"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:99999", "is not a URL"),
        ("http://a b", "holds spaces or control characters"),
        ("http://a\nb", "holds spaces or control characters"),
    ],
)
def test_a_url_that_is_not_a_servers_is_a_usage_error(cli: CliRunner, url: str, told: str) -> None:
    """``notaurl`` and ``http://[::1`` were tracebacks from the URL parser."""
    for command in (["status", "x", "--url", url], ["run", "loop", "--url", url]):
        result = cli.invoke(main, command)
        assert result.exit_code == 2, result.output
        assert told in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_number_option_that_is_not_finite_is_a_usage_error(cli: CliRunner, value: str) -> None:
    """NaN passes every bound: ``--grace nan`` was a traceback, ``--wait nan`` a silent
    default."""
    for command in (["reconcile", "--grace", value], ["run", "loop", "--wait", value]):
        result = cli.invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("workers", ["0", "-1", "abc"])
def test_serve_needs_a_worker(cli: CliRunner, workers: str) -> None:
    """With none, serve took runs and never ran them, without a word."""
    result = cli.invoke(main, ["serve", "--port", "0", "--workers", workers])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--workers'" in result.output


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_port_that_is_no_port_is_a_usage_error_naming_the_flag(cli: CliRunner, port: str) -> None:
    result = cli.invoke(main, ["serve", "--port", port])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--port'" in result.output


def test_serve_on_a_port_in_use_is_an_error_line(tmp_path: Path) -> None:
    """It was werkzeug's message, a traceback of the server half built, and exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "REFLUXO_DB": str(tmp_path / "serve.db")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (another program "
        "listens there: stop it, or choose another port)"
    )
    assert result.stdout == ""


def test_a_server_answering_what_is_not_http_is_an_error_line(cli: CliRunner) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_garbage() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"garbage\r\n\r\n")

        server = threading.Thread(target=answer_garbage)
        server.start()
        result = cli.invoke(main, ["status", "x", "--url", f"http://127.0.0.1:{port}"])
        server.join()
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no answer from http://127.0.0.1:{port}: ")


def answering_once(listener: socket.socket, body: bytes) -> threading.Thread:
    """A server that answers one request with ``body`` as JSON, then closes."""

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            connection.sendall(head.encode() + body)

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2, 3]",
        b"null",
        b'{"runs": "not a list"}',
        b'{"status": 5}',
        b"[" * 50_000 + b"]" * 50_000,
    ],
    ids=["list", "null", "runs-not-a-list", "wrong-types", "deep"],
)
@pytest.mark.parametrize("command", [["status", "r1"], ["list"], ["cancel", "r1"]])
def test_a_server_answering_json_of_another_shape_is_an_error_line(
    cli: CliRunner, body: bytes, command: list[str]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        server = answering_once(listener, body)
        result = cli.invoke(main, [*command, "--url", url])
        server.join()
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {url} answered with "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_server_trickling_its_answer_is_given_up_on_within_the_timeout() -> None:
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def trickle() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not stop.wait(0.05):  # a byte every 50 ms: each read is quick
                    try:
                        connection.sendall(b" ")
                    except OSError:
                        return

        server = threading.Thread(target=trickle)
        server.start()
        started = time.monotonic()
        try:
            with pytest.raises(ServerUnreachable, match="its body took over 1 s"):
                HttpClient(url, timeout=1.0).get("r1")
        finally:
            stop.set()
            server.join()
    assert time.monotonic() - started < 5


def many_nodes(count: int) -> bytes:
    nodes = [{"id": f"n{i}", "type": "trigger"} for i in range(count)]
    return json.dumps({"nodes": nodes}).encode()


HOSTILE_FILES = [
    pytest.param(
        b'{"nodes": [{"id": "a", "type": "t", "data": ' + b"[" * 70 + b"]" * 70 + b"}]}",
        1,
        "nested more than 64 levels deep",
        id="deep",
    ),
    pytest.param(
        b'{"nodes": [{"id": "a", "type": "t",\n "data": {"x": NaN}}]}',
        2,
        "NaN is not a JSON number",
        id="nan",
    ),
    pytest.param(
        b'{"nodes": [{"id": "a", "type": "t",\n "data": {"x": -Infinity}}]}',
        2,
        "-Infinity is not a JSON number",
        id="infinity",
    ),
    pytest.param(
        b'{"nodes": [\n{"id": "a", "type": "t", "data": {"x": "\\ud800"}}]}',
        2,
        "a lone UTF-16 surrogate",
        id="surrogate",
    ),
    pytest.param(
        b'{"nodes": [\n{"id": "\xff", "type": "t"}]}',
        2,
        "not UTF-8 text (invalid start byte at byte 20)",
        id="not-utf8",
    ),
    pytest.param('{"nodes": []}'.encode("utf-16"), 1, "not UTF-8 text", id="utf16"),
    pytest.param(many_nodes(2_001), 1, "2001 nodes; the limit is 2000", id="too-many-nodes"),
]


@pytest.mark.parametrize(("raw", "line", "told"), HOSTILE_FILES)
def test_validate_tells_what_is_wrong_with_a_hostile_file_and_where(
    cli: CliRunner, tmp_path: Path, raw: bytes, line: int, told: str
) -> None:
    hostile = tmp_path / "hostile.json"
    hostile.write_bytes(raw)
    result = cli.invoke(main, ["validate", "--no-app", str(hostile)])
    assert result.exit_code == 1, result.output
    assert f"{hostile}:{line}: error: " in result.output
    assert told in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("raw", "line", "told"), HOSTILE_FILES)
def test_registering_a_hostile_file_is_a_definition_error_saying_where(
    tmp_path: Path, raw: bytes, line: int, told: str
) -> None:
    hostile = tmp_path / "hostile.json"
    hostile.write_bytes(raw)
    with pytest.raises((WorkflowDefinitionError, LimitExceededError)) as raised:
        App().workflow("hostile", hostile)
    assert told in str(raised.value)


@pytest.mark.parametrize(
    ("data", "told"),
    [
        ({"x": float("nan")}, "NaN or an infinity"),
        ({"x": "\ud800"}, "a lone UTF-16 surrogate"),
    ],
)
def test_registering_a_workflow_whose_data_json_cannot_hold_says_which_node(
    data: dict[str, Any], told: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=f"node 'a' data holds {told}"):
        App().workflow("w", {"nodes": [{"id": "a", "type": "trigger", "data": data}]})


def test_graph_highlights_the_path_a_run_took(cli: CliRunner) -> None:
    cli.invoke(main, ["run", "content-approval", "--run-id", "post-3", "--input", "{}"])
    cli.invoke(main, ["resume", "post-3", "--payload", '{"approved": false, "comment": "no"}'])
    file = ROOT / "refluxo" / "examples" / "content_approval.json"
    result = cli.invoke(main, ["graph", str(file), "--run", "post-3"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("flowchart TD\n")
    assert "-->|rejected|" in text
    visited = next(line for line in text.splitlines() if line.strip().startswith("class "))
    assert "reject" in visited
    assert "publish" not in visited
    assert "linkStyle 0,1,3 " in text  # start->draft, draft->review, review->reject


def test_demo_runs_the_examples_through_the_local_http_api(cli: CliRunner) -> None:
    result = cli.invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "API on http://127.0.0.1:" in result.output
    assert "paused at 'review'" in result.output
    assert "completed at version 6" in result.output
    assert "charged 42 on attempt 3" in result.output
    assert '"totalWithTax": 144' in result.output


def test_serve_answers_over_http(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "refluxo.host.cli",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "serve.db"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # printed once the socket is listening
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        client = HttpClient(match.group(1))
        assert client.request("GET", "/healthz") == {"status": "ok"}
        run = client.start("loop", {"items": [3, 4]})
        wait_until(lambda: client.get(run["runId"])["status"] == "completed", 30, "the run")
        assert client.get(run["runId"])["resultCount"] == 7
    finally:
        stopped(server)


def _serve(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", "0", *flags],
        cwd=ROOT,
        env={**os.environ, "REFLUXO_DB": str(tmp_path / "serve.db"), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_requires_the_api_key_on_every_route_but_health(tmp_path: Path, how: str) -> None:
    key = "k" * 32
    server = (
        _serve(tmp_path, "--api-key", key)
        if how == "flag"
        else _serve(tmp_path, env={"REFLUXO_API_KEY": key})
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        anonymous = HttpClient(match.group(1))
        assert anonymous.request("GET", "/healthz") == {"status": "ok"}
        for method, path in [("GET", "/runs"), ("GET", "/workflows"), ("GET", "/runs/x")]:
            with pytest.raises(ApiError) as refused:
                anonymous.request(method, path)
            assert refused.value.status == 401
        with pytest.raises(ApiError) as refused:
            anonymous.start("loop", {"items": [1]})
        assert refused.value.status == 401
        with pytest.raises(ApiError) as step:
            anonymous.request("POST", "/tasks/step", {"runId": "x", "version": 0})
        assert step.value.status == 401
        keyed = HttpClient(match.group(1), api_key=key)
        run = keyed.start("loop", {"items": [1]})
        wait_until(lambda: keyed.get(run["runId"])["status"] == "completed", 30, "the run")
    finally:
        stopped(server)


def test_the_step_route_is_closed_without_a_key_on_the_embedded_default(tmp_path: Path) -> None:
    server = _serve(tmp_path)
    try:
        assert server.stdout is not None
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", server.stdout.readline())
        assert match
        client = HttpClient(match.group(1))
        run = client.start("loop", {"items": [1]})
        with pytest.raises(ApiError) as refused:
            client.request("POST", "/tasks/step", {"runId": run["runId"], "version": 0})
        assert refused.value.status == 403
    finally:
        stopped(server)


def test_every_serve_flag_names_its_environment_variable(cli: CliRunner) -> None:
    result = cli.invoke(main, ["serve", "--help"])
    for variable in (
        "REFLUXO_APP",
        "REFLUXO_DB",
        "REFLUXO_HOST",
        "REFLUXO_PORT",
        "REFLUXO_WORKERS",
        "REFLUXO_BATCH_STEPS",
        "REFLUXO_API_KEY",
    ):
        assert variable in result.output, variable


def test_every_option_of_every_command_names_its_environment_variable(cli: CliRunner) -> None:
    import click

    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.envvar, f"{name} {param.opts}"
                assert param.show_envvar, f"{name} {param.opts}"


def test_serve_with_a_short_key_says_why_without_a_traceback(cli: CliRunner) -> None:
    result = cli.invoke(main, ["serve", "--api-key", "k1", "--port", "0"])
    assert result.exit_code != 0
    assert "REFLUXO_API_KEY" in result.output
    assert "Traceback" not in result.output


GATED_APP = """
import pathlib

from refluxo import StepResult
from refluxo.runtime import App

app = App()
HERE = pathlib.Path(__file__).parent


@app.node()
def gated(data, context, payload, globals):
    if not (HERE / "released").exists():
        (HERE / "started").touch()
        with open(HERE / "release") as gate:  # a FIFO: blocks until the test closes it
            gate.read()
        (HERE / "released").touch()
    return StepResult({"done": True})


app.workflow(
    "gated",
    {
        "nodes": [{"id": "g", "type": "gated"}, {"id": "after", "type": "gated"}],
        "edges": [{"source": "g", "target": "after"}],
    },
)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_run_lets_its_step_finish_when_signalled(tmp_path: Path, signal_name: str) -> None:
    """SIGTERM killed ``refluxo run`` in the middle of its step (it ran again later); Ctrl-C
    let it finish but said only ``Aborted!``."""
    import signal

    (tmp_path / "gated_app.py").write_text(GATED_APP)
    os.mkfifo(tmp_path / "release")

    def release() -> bool:
        """Open the gate's writing end (once the step reads it) and close it: end of file."""
        try:
            os.close(os.open(tmp_path / "release", os.O_WRONLY | os.O_NONBLOCK))
        except OSError as err:
            if err.errno == errno.ENXIO:  # no reader yet
                return False
            raise
        return True

    # As a terminal starts it: a shell starts background jobs (CI's, say) with SIGINT
    # ignored, and Python keeps it so.
    interactive = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'refluxo'; runpy.run_module('refluxo.host.cli', run_name='__main__')"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", interactive, "run", "gated", "--app", "gated_app:app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "REFLUXO_DB": "runs.db"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until((tmp_path / "started").exists, 30, "the step to start")
        process.send_signal(getattr(signal, signal_name))
        wait_until(release, 30, "the step to take its release")
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out + err
    assert "Error: interrupted (steps in progress were let finish)" in err
    assert "Traceback" not in err
    listed = subprocess.run(
        [sys.executable, "-m", "refluxo.host.cli", "list", "--json", "--app", "gated_app:app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "REFLUXO_DB": "runs.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    runs = json.loads(listed.stdout)["runs"]
    assert len(runs) == 1
    assert runs[0]["version"] >= 1, runs  # the first step committed
