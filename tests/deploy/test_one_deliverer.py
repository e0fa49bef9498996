"""One process at a time delivers a database's steps: ``refluxo serve`` holds it, and a
second deliverer (``refluxo run`` without ``--url``, a library runtime) is refused with a
message naming the holder, instead of running the same steps at the same time. A process
that only records (a run started with no workers) still works: the holder delivers it.
The holder's end, even ``kill -9``, frees the database at once."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from refluxo.backends.sqlite.ownership import DatabaseInUse
from refluxo.host.cli import main
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.options import load_app
from refluxo.model import SnapshotStatus
from tests.support.emulators import start_functions_framework
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(database: Path, *flags: str) -> Iterator[subprocess.Popen[str]]:
    """``refluxo serve`` on ``database`` until the block ends (killed if still running)."""
    env = {**os.environ, "REFLUXO_DB": str(database)}
    for name in ("REFLUXO_API_KEY", "REFLUXO_HOST", "REFLUXO_ALLOWED_HOSTS"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", "0", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once it delivers and listens
        assert re.search(r"on http://127\.0\.0\.1:\d+ ", banner), banner
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)  # the project whose app the commands load
    path = tmp_path / "project.db"
    monkeypatch.setenv("REFLUXO_DB", str(path))
    return path


def test_refluxo_run_without_url_is_refused_while_serve_delivers(database: Path) -> None:
    with serving(database) as server:
        result = CliRunner().invoke(main, ["run", "content-approval", "--run-id", "second"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: another process is delivering the steps of")
    assert re.search(
        rf"\(pid {server.pid}: cli.py serve on http://127\.0\.0\.1:\d+\): ", result.output
    ), result.output
    assert "Send the command to it with --url" in result.output
    assert "Traceback" not in result.output


def test_a_library_runtime_that_would_deliver_is_refused_one_that_records_is_served(
    database: Path,
) -> None:
    app = load_app(None)
    with serving(database) as server:
        delivering = EmbeddedRuntime(app, database, workers=2)
        with pytest.raises(DatabaseInUse, match=f"pid {server.pid}: "):
            delivering.start()
        with pytest.raises(DatabaseInUse):
            delivering.scheduler.drain()
        delivering.stop()
        recording = EmbeddedRuntime(app, database, workers=0)
        try:
            recording.service.start("content-approval", {"title": "T"}, run_id="recorded")
            # Delivered by the server (it reads deliveries other processes record).
            wait_until(
                lambda: recording.service.get("recorded").status == SnapshotStatus.PAUSED,
                30,
                "the server delivering the run recorded here",
            )
        finally:
            recording.stop()


def test_a_killed_holder_frees_the_database_at_once(database: Path) -> None:
    with serving(database) as server:
        server.kill()  # no chance to release anything itself
        server.wait(10)
    runtime = EmbeddedRuntime(load_app(None), database, workers=2).start()
    try:
        runtime.service.start("content-approval", {"title": "T"}, run_id="after")
        wait_until(
            lambda: runtime.service.get("after").status == SnapshotStatus.PAUSED,
            30,
            "this process delivering",
        )
    finally:
        runtime.stop()


def test_the_holder_is_named_by_its_command_never_its_options(database: Path) -> None:
    key = "holder-secret-key-0123456789"
    with serving(database, "--api-key", key) as server:
        result = CliRunner().invoke(main, ["run", "content-approval"])
        lock_text = database.with_name(database.name + ".lock").read_text()
    assert re.fullmatch(rf"pid {server.pid}: cli.py serve on http://127\.0\.0\.1:\d+\n", lock_text)
    assert result.exit_code == 1
    assert key not in result.output


def test_a_database_reached_through_a_symbolic_link_has_the_same_lock(
    database: Path, tmp_path: Path
) -> None:
    app = load_app(None)
    holder = EmbeddedRuntime(app, database, workers=1).start()
    try:
        link = tmp_path / "elsewhere.db"
        link.symlink_to(database)
        other = EmbeddedRuntime(app, link, workers=1)
        with pytest.raises(DatabaseInUse, match="another process is delivering"):
            other.start()
        other.stop()
    finally:
        holder.stop()


def test_several_workers_of_one_functions_server_share_the_database(database: Path) -> None:
    """functions-framework with three worker processes on the embedded default: one
    delivers, the others serve the API in standby (they answered 500 with a traceback, on
    every request, before), and one of them takes over when the deliverer is killed."""
    env = {"REFLUXO_DB": str(database), "WORKERS": "3", "PYTHONPATH": str(ROOT)}
    lock_file = database.with_name(database.name + ".lock")
    with start_functions_framework(ROOT / "main.py", "api", env=env) as server:
        statuses = []
        for index in range(12):  # reaches every worker: each builds its deployment
            status, _ = call(server.port, "POST" if index == 0 else "GET", "/runs")
            statuses.append(status)
        assert statuses == [201] + [200] * 11, server.process.log_tail()

        def paused(count: int) -> bool:
            _, page = call(server.port, "GET", "/runs")
            return [run["status"] for run in page["runs"]] == ["paused"] * count

        wait_until(lambda: paused(1), 30, "the run started through any worker delivered")
        deliverer = int(lock_file.read_text().split(":")[0].removeprefix("pid "))
        os.kill(deliverer, signal.SIGKILL)
        assert call(server.port, "POST", "/runs")[0] == 201
        wait_until(lambda: paused(2), 30, "a worker in standby delivering")
        assert int(lock_file.read_text().split(":")[0].removeprefix("pid ")) != deliverer
        log = server.process.log_path.read_text(errors="replace")
    assert "Traceback" not in log


def call(port: int, method: str, path: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"workflow": "content-approval", "input": {"title": "T"}})
        connection.request(
            method,
            path,
            body=body.encode() if method == "POST" else None,
            headers={"Content-Type": "application/json"} if method == "POST" else {},
        )
        response = connection.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
        return response.status, answer
    finally:
        connection.close()
