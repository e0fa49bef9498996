"""``refluxo serve`` belongs to its owner: run as a user runs it, in its own process."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.processes import stopped
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "serve-key-0123456789abcdef"


def serve_command(tmp_path: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", "0", *flags]


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "REFLUXO_DB": str(tmp_path / "serve.db"), **extra}
    for name in ("REFLUXO_API_KEY", "REFLUXO_HOST", "REFLUXO_ALLOWED_HOSTS"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize(
    ("flags", "extra"),
    [
        (("--host", "0.0.0.0"), {}),
        (("--host", "::"), {}),
        ((), {"REFLUXO_HOST": "0.0.0.0"}),
    ],
)
def test_serve_refuses_to_listen_beyond_this_machine_without_a_key(
    tmp_path: Path, flags: tuple[str, ...], extra: dict[str, str]
) -> None:
    """``--host 0.0.0.0`` used to serve every run to the network, unauthenticated."""
    result = subprocess.run(
        serve_command(tmp_path, *flags),
        cwd=ROOT,
        env=environment(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "REFLUXO_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "serve.db").exists()


def start_serve(tmp_path: Path, *flags: str, **extra: str) -> subprocess.Popen[str]:
    """``refluxo serve`` in its own process, its output (stderr too) on a text pipe."""
    return subprocess.Popen(
        serve_command(tmp_path, *flags),
        cwd=ROOT,
        env=environment(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def serving(tmp_path: Path, *flags: str, **extra: str) -> Iterator[tuple[str, int]]:
    """Run ``refluxo serve`` until the block ends; yields the host and port it printed."""
    process = start_serve(tmp_path, *flags, **extra)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the socket is listening
        match = re.search(r"on http://([\w.:\[\]]+):(\d+) ", banner)
        assert match, banner
        yield match.group(1), int(match.group(2))
    finally:
        stopped(process)


def call(
    port: int, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        connection.request(method, path, body=body, headers=named)
        response = connection.getresponse()
        assert response.getheader("Content-Type") == "application/json"
        answer: dict[str, object] = json.loads(response.read())
        return response.status, answer
    finally:
        connection.close()


def test_serve_with_a_key_may_listen_everywhere_and_guards_every_route(tmp_path: Path) -> None:
    flags = ("--host", "0.0.0.0", "--allowed-hosts", "refluxo.lan")
    with serving(tmp_path, *flags, REFLUXO_API_KEY=KEY) as (_, port):
        local = f"127.0.0.1:{port}"
        assert call(port, "GET", "/healthz", Host=local)[0] == 200
        assert call(port, "GET", "/runs", Host=local)[0] == 401
        assert call(port, "GET", "/runs", Host=local, X_API_Key=KEY)[0] == 200
        assert call(port, "GET", "/runs", Host="refluxo.lan", X_API_Key=KEY)[0] == 200
        assert call(port, "GET", "/runs", Host="evil.example", X_API_Key=KEY)[0] == 421
        step = json.dumps({"runId": "x", "version": 0}).encode()
        headers = {"Host": local, "Content_Type": "application/json"}
        assert call(port, "POST", "/tasks/step", step, **headers)[0] == 401


def test_serve_without_a_key_answers_its_owner_only(tmp_path: Path) -> None:
    with serving(tmp_path) as (host, port):
        assert host == "127.0.0.1"
        status, answer = call(
            port, "POST", "/runs", b'{"workflow": "loop"}', Content_Type="text/plain"
        )
        assert status == 415, answer
        status, answer = call(port, "GET", "/runs", Host=f"attacker.example:{port}")
        assert status == 421, answer
        status, answer = call(
            port, "POST", "/runs", b'{"workflow": "loop"}', Content_Type="application/json"
        )
        assert status == 201, answer


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """A service manager's stop (SIGTERM) ends serve as Ctrl-C does: the runtime stops
    (its steps in progress finish) and the process exits 0, not killed by the signal."""
    process = start_serve(tmp_path)
    assert process.stdout is not None
    try:
        assert "refluxo serving" in process.stdout.readline()
        process.terminate()
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_serve_stops_on_sigterm_while_requests_keep_arriving(tmp_path: Path) -> None:
    """The signal lands wherever the accept loop is, handing a connection to its thread
    included: one landing there was lost before (serve went on serving), and it must stop
    on each."""
    for requests in (50, 100, 150):
        output, returncode = _sigterm_while_flooded(tmp_path, requests)
        assert returncode == 0, output
        assert "Traceback" not in output


def _sigterm_while_flooded(tmp_path: Path, requests: int) -> tuple[str, int]:
    """Serve, start a run, flood /healthz from four clients, and send SIGTERM once
    ``requests`` were answered. Returns serve's output and exit code."""
    process = start_serve(tmp_path)
    assert process.stdout is not None
    answered = 0
    done = threading.Event()

    def flood(port: int) -> None:
        nonlocal answered
        while not done.is_set():
            try:
                call(port, "GET", "/healthz")
            except (OSError, http.client.HTTPException):
                return  # the server stopped listening
            answered += 1

    try:
        match = re.search(r":(\d+) ", process.stdout.readline())
        assert match
        port = int(match.group(1))
        body = b'{"workflow": "loop", "input": {"items": [1, 2]}}'
        status, run = call(port, "POST", "/runs", body, Content_Type="application/json")
        assert status == 201, run
        for _ in range(4):
            threading.Thread(target=flood, args=(port,), daemon=True).start()
        wait_until(lambda: answered >= requests, 30, "requests to be answered")
        output = stopped(process)
    finally:
        done.set()
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    return output, process.returncode
