"""``refluxo serve`` says where its inspector is, and logs what a user follows: each failed
attempt with the time of the next one, each pause with its timer's time, each failed run
with its reason; one line each, with the run id and the node."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from refluxo.api.client import HttpClient
from refluxo.host.logs import TextFormatter
from refluxo.host.serve_log import DueTimes
from tests.support.processes import stopped
from tests.support.waiting import wait_until

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

APP = textwrap.dedent(
    """
    from refluxo import RetryPolicy, StepResult
    from refluxo.runtime import App, current_step

    app = App()


    @app.node(retry_policy=RetryPolicy(max_attempts=2, interval=1500))
    def once(data, context, payload, globals):
        if current_step().attempt == 1:
            raise ConnectionError("first try fails")
        return StepResult({"ok": True})


    @app.node(retry_policy=RetryPolicy(max_attempts=2, interval=200))
    def flaky(data, context, payload, globals):
        raise ConnectionError("carrier unreachable")


    def chain(kind, data=None):
        nodes = [{"id": "start", "type": "trigger"}, {"id": "step", "type": kind, "data": data}]
        return {"start": "start", "nodes": nodes, "edges": [{"source": "start", "target": "step"}]}


    app.workflow("fail", chain("flaky"))
    app.workflow("nap", chain("wait", {"seconds": 600}))
    app.workflow("retry-once", chain("once"))
    """
)


def event_record(fields: dict[str, object], message: str = "m") -> logging.LogRecord:
    record = logging.LogRecord("refluxo.events", logging.WARNING, __file__, 1, message, (), None)
    record.refluxo = fields  # as log_event attaches them
    return record


def test_a_failed_attempt_s_line_gets_the_next_attempt_s_iso_time() -> None:
    asked: list[str] = []

    def due(run_id: str) -> dict[str, float]:
        asked.append(run_id)
        return {"nextRetryAt": 1_800_000_000_000}

    times = DueTimes(due)
    failed = event_record({"event": "attempt_failed", "runId": "r1", "node": "n", "attempt": 1})
    assert times.filter(failed)
    line = TextFormatter().format(failed)
    assert "attempt_failed run=r1 node=n attempt=1 nextRetryAt=2027-01-15T08:00:00Z: m" in line

    done = event_record({"event": "step", "runId": "r2", "outcome": "completed"})
    assert times.filter(done)
    assert asked == ["r1"]  # only failed attempts and pauses cost a read


def test_a_read_that_fails_leaves_the_line_as_it_was() -> None:
    def broken(run_id: str) -> dict[str, float]:
        raise RuntimeError("store down")

    paused = event_record({"event": "step", "runId": "r", "outcome": "paused"})
    assert DueTimes(broken).filter(paused)
    assert "resumeAt" not in TextFormatter().format(paused)


def serve(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "serve_log_app.py").write_text(APP)
    return subprocess.Popen(
        [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", "0"],
        cwd=tmp_path,
        env={**ENV, "REFLUXO_APP": "serve_log_app:app", "REFLUXO_DB": str(tmp_path / "s.db")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


ENV = {name: value for name, value in os.environ.items() if not name.startswith("REFLUXO_")}


def test_serve_prints_the_inspector_and_logs_failures_and_pauses(tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        assert server.stdout.readline() == f"inspector: {match.group(1)}/ui\n"
        client = HttpClient(match.group(1))
        failing = client.start("fail", {}, "f-1")["runId"]
        napping = client.start("nap", {}, "n-1")["runId"]
        wait_until(lambda: client.get(failing)["status"] == "failed", 30, "the failed run")
        wait_until(lambda: client.get(napping)["status"] == "paused", 30, "the pause")
    finally:
        log = stopped(server)
    lines = log.splitlines()
    assert "\x1b[" not in log  # werkzeug coloured its access lines for a terminal
    assert any('"POST /runs HTTP/1.1" 201' in line for line in lines), log

    def line_of(*parts: str) -> str:
        found = [line for line in lines if all(part in line for part in parts)]
        assert len(found) == 1, (parts, log)
        return found[0]

    attempt = line_of("WARNING attempt_failed", "run=f-1", "attempt=1 ")
    assert re.search(
        rf"node=step .*attempt=1 .*nextRetryAt={ISO}: ConnectionError: carrier unreachable$",
        attempt,
    ), attempt
    failed = line_of("ERROR run_failed", "run=f-1")
    assert "node=step" in failed
    assert failed.endswith("ConnectionError: carrier unreachable"), failed
    pause = line_of("step", "run=n-1", "outcome=paused")
    assert re.search(rf"node=step .*resumeAt={ISO}", pause), pause


def test_run_over_url_reads_the_run_a_few_times_not_every_50_ms(tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        assert server.stdout is not None
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", server.stdout.readline())
        assert match
        server.stdout.readline()  # the inspector's address
        followed = subprocess.run(
            [sys.executable, "-m", "refluxo.host.cli", "run", "retry-once", "--run-id", "o-1"],
            cwd=tmp_path,
            env={**ENV, "REFLUXO_URL": match.group(1)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        log = stopped(server)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "... next attempt of 'step' at " in followed.stdout
    assert followed.stdout.rstrip().endswith("run o-1: completed")
    reads = log.count('"GET /runs/o-1?')
    # The run takes 1.5 s (its retry's interval): read once at the retry's time and then
    # at 50, 100, 200... ms, where reads every 50 ms would be about 30.
    assert 2 <= reads <= 12, log
