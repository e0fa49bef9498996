"""The log a deployment writes: JSON lines Cloud Logging reads, readable text elsewhere.

On Google Cloud every record is one JSON object on one line: ``severity``, ``message``,
``time``, the runtime event's fields, and the trace of the request being served
(``X-Cloud-Trace-Context``), which never outlives the request.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Request
from werkzeug.test import EnvironBuilder

from refluxo.api.http import HttpApi
from refluxo.api.trace import current_trace, parse_trace_header, traced
from refluxo.backends.memory import MemoryStore
from refluxo.host.logs import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_format,
    severity,
)
from refluxo.host.settings import ConfigurationError
from refluxo.runtime import Dispatcher, RunService
from refluxo.runtime.events_log import log_event
from tests.support import gcp_fixtures
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.emulators import EMULATOR_PROJECT, free_port, start_functions_framework
from tests.support.stored import ListScheduler

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "105445aa7843bc8bf206b12000100000"

firestore_emulator = gcp_fixtures.firestore_emulator


class Lines(logging.Handler):
    """Every record of the test, as the given formatter writes it."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    handler = Lines(JsonFormatter("acme"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def step_request(run_id: str, version: int, trace: str | None = None) -> Request:
    headers = [("Host", "localhost")]
    if trace is not None:
        headers.append(("X-Cloud-Trace-Context", trace))
    environ = EnvironBuilder(
        path="/tasks/step",
        method="POST",
        json={"runId": run_id, "version": version},
        headers=headers,
    ).get_environ()
    return Request(environ)


@pytest.fixture
def api(clock: FakeClock) -> Iterator[HttpApi]:
    """The API over the memory store; deliveries are handed over by the test."""
    service = RunService(Dispatcher(build_app(clock), MemoryStore(), ListScheduler()))
    yield HttpApi(service)
    service.close()


# -- the JSON line -------------------------------------------------------------------------


def test_each_record_is_one_json_object_with_its_severity(json_lines: Lines) -> None:
    logger = logging.getLogger("refluxo.test")
    logger.debug("d")
    logger.info("i")
    logger.warning("two\nlines")
    logger.error("e %s", "formatted")
    logger.critical("c")
    logger.log(25, "between info and warning")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    assert all("\n" not in line for line in json_lines.lines)
    lines = json_lines.json()
    assert [(line["severity"], line["message"]) for line in lines] == [
        ("DEBUG", "d"),
        ("INFO", "i"),
        ("WARNING", "two\nlines"),
        ("ERROR", "e formatted"),
        ("CRITICAL", "c"),
        ("INFO", "between info and warning"),
        ("ERROR", "it failed"),
    ]
    assert all(line["logger"] == "refluxo.test" for line in lines)
    assert all(line["time"].endswith("Z") for line in lines)
    assert "ValueError: boom" in lines[-1]["exception"]
    assert "Traceback" in lines[-1]["exception"]
    assert "exception" not in lines[0]
    assert all("logging.googleapis.com/trace" not in line for line in lines)  # no request


def test_severities_follow_the_levels() -> None:
    assert [severity(level) for level in (0, 5, 10, 15, 20, 30, 40, 50, 60)] == [
        "DEFAULT",
        "DEFAULT",
        "DEBUG",
        "DEBUG",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
        "CRITICAL",
    ]


def test_an_event_s_fields_are_top_level_fields(json_lines: Lines) -> None:
    log_event(
        "run_failed",
        "node 'n' failed",
        level=logging.ERROR,
        run_id="abc",
        workflow="w",
        node="n",
        version=3,
        failedReason="node 'n' failed",
        score=float("nan"),
    )
    (line,) = json_lines.json()
    assert line["severity"] == "ERROR"
    assert line["event"] == "run_failed"
    assert (line["runId"], line["workflow"], line["node"], line["version"]) == ("abc", "w", "n", 3)
    assert line["failedReason"] == "node 'n' failed"
    assert line["message"] == "node 'n' failed"
    assert line["score"] == "nan"  # JSON has no NaN: its text, and the line stays JSON


def test_a_long_text_is_clipped(json_lines: Lines) -> None:
    log_event("attempt_failed", "x" * 100_000, run_id="abc", error="y" * 100_000)
    (line,) = json_lines.json()
    assert len(json_lines.lines[0]) < 5_000
    assert line["error"].endswith("... (100000 chars)")


def test_the_text_line_shows_the_event_and_its_fields() -> None:
    formatter = TextFormatter()
    record = logging.LogRecord("refluxo.events", logging.ERROR, __file__, 1, "reason", (), None)
    record.refluxo = {  # as log_event attaches them
        "event": "run_failed",
        "runId": "abc",
        "workflow": "w",
        "node": "n",
        "failedReason": "reason",
    }
    line = formatter.format(record)
    assert line.endswith(" ERROR run_failed run=abc workflow=w node=n: reason"), line
    plain = logging.LogRecord("refluxo.http", logging.WARNING, __file__, 1, "m %s", ("x",), None)
    assert formatter.format(plain).endswith(" WARNING refluxo.http: m x")
    quoted = logging.LogRecord("refluxo.events", logging.INFO, __file__, 1, "m", (), None)
    quoted.refluxo = {"event": "step", "runId": "r", "error": "a b"}
    assert formatter.format(quoted).endswith(' step run=r error="a b": m')


# -- the trace -----------------------------------------------------------------------------


def test_the_trace_header_is_read_strictly() -> None:
    trace = parse_trace_header(f"{TRACE_ID}/12345;o=1")
    assert trace is not None
    assert (trace.trace_id, trace.span_id, trace.sampled) == (TRACE_ID, "0000000000003039", True)
    assert parse_trace_header(TRACE_ID) == parse_trace_header(f"{TRACE_ID};o=0")
    for header in (None, "", "not-hex/1", f"{TRACE_ID}/1;o=1\nforged", f'{TRACE_ID}"', "a" * 33):
        assert parse_trace_header(header) is None, header


def test_a_request_s_lines_carry_its_trace_and_the_next_request_s_do_not(
    api: HttpApi, json_lines: Lines
) -> None:
    run = api.service.start("chain").record
    response = api(step_request(run.run_id, 0, f"{TRACE_ID}/12345;o=1"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert current_trace.get() is None  # reset when the request ended
    traced_lines = json_lines.json()
    (step,) = [line for line in traced_lines if line.get("event") == "step"]
    assert step["node"] == "n0"
    assert step["outcome"] == "completed"
    for line in traced_lines:  # the dispatcher's and the HTTP layer's
        assert line["logging.googleapis.com/trace"] == f"projects/acme/traces/{TRACE_ID}"
        assert line["logging.googleapis.com/spanId"] == "0000000000003039"
        assert line["logging.googleapis.com/trace_sampled"] is True
    json_lines.lines.clear()
    assert api(step_request(run.run_id, 1)).status_code == 200
    untraced = json_lines.json()
    assert [line["node"] for line in untraced if line.get("event") == "step"] == ["n1"]
    assert all("logging.googleapis.com/trace" not in line for line in untraced)


def test_concurrent_requests_on_threads_keep_their_own_traces(
    api: HttpApi, json_lines: Lines
) -> None:
    """functions-framework serves requests on gunicorn threads, and a thread is reused."""
    runs = [api.service.start("chain").record.run_id for _ in range(12)]
    traces = {run_id: f"{index + 1:032x}" for index, run_id in enumerate(runs)}

    def deliver(run_id: str) -> None:
        for version in range(5):  # every step of the run, each its own request
            header = f"{traces[run_id]}/{version + 1};o=1" if version % 2 == 0 else None
            assert api(step_request(run_id, version, header)).status_code == 200

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(deliver, runs))
    steps = [line for line in json_lines.json() if line.get("event") == "step"]
    assert len(steps) == 12 * 5
    for line in steps:
        trace = line.get("logging.googleapis.com/trace")
        if line["version"] % 2 == 1:  # versions 1, 3, 5: delivered at 0, 2, 4 with a trace
            assert trace == f"projects/acme/traces/{traces[line['runId']]}"
            assert line["logging.googleapis.com/spanId"] == f"{line['version']:016x}"
        else:
            assert trace is None, line


def test_no_project_no_trace(json_lines: Lines) -> None:
    formatter = JsonFormatter(None)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    with traced(f"{TRACE_ID}/1;o=1"):
        line = json.loads(formatter.format(record))
    assert "logging.googleapis.com/trace" not in line


# -- choosing the format -------------------------------------------------------------------


def test_json_on_google_cloud_text_elsewhere_unless_chosen() -> None:
    assert log_format({}, cloud=True) == "json"
    assert log_format({}, cloud=False) == "text"
    assert log_format({"REFLUXO_LOG_FORMAT": "JSON"}, cloud=False) == "json"
    assert log_format({"REFLUXO_LOG_FORMAT": "text"}, cloud=True) == "text"
    with pytest.raises(ConfigurationError, match="REFLUXO_LOG_FORMAT"):
        log_format({"REFLUXO_LOG_FORMAT": "xml"}, cloud=True)


def test_configure_logging_leaves_one_handler_on_the_root() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        env = {"REFLUXO_LOG_LEVEL": "warning", "GOOGLE_CLOUD_PROJECT": "acme"}
        handler = configure_logging(env, cloud=True, stream=stream)
        assert root.handlers == [handler]
        assert root.level == logging.WARNING
        logging.getLogger("refluxo.test").info("not shown")
        logging.getLogger("refluxo.test").warning("shown")
        (line,) = stream.getvalue().splitlines()
        assert json.loads(line)["message"] == "shown"
        with pytest.raises(ConfigurationError, match="REFLUXO_LOG_LEVEL"):
            configure_logging({"REFLUXO_LOG_LEVEL": "loud"}, cloud=True, stream=stream)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


# -- main.py on Google Cloud ---------------------------------------------------------------


def test_main_on_google_cloud_writes_json_lines_with_the_trace(firestore_emulator: str) -> None:
    env = {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": EMULATOR_PROJECT,
        "REFLUXO_REGION": "here",
        "REFLUXO_TASKS_QUEUE": "steps",
        "REFLUXO_STEP_URL": "http://127.0.0.1:9/tasks/step",
        "REFLUXO_VERIFY_OIDC": "false",
        # No task is created here: the emulator's address may answer nothing.
        "REFLUXO_TASKS_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "FUNCTION_TARGET": "step",
        "PYTHONPATH": str(ROOT),
    }
    server = start_functions_framework(ROOT / "main.py", "step", env=env)
    try:
        request = json.dumps({"runId": "no-such-run", "version": 0}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request(
                "POST",
                "/tasks/step",
                body=request,
                headers={
                    "Content-Type": "application/json",
                    "X-Cloud-Trace-Context": f"{TRACE_ID}/7;o=1",
                },
            )
            response = connection.getresponse()
            answer = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == 200, (answer, server.process.log_tail())
        assert answer["outcome"] == "unknown_run"
        # stdout and stderr share this file; the handler writes to stderr, flushed per line.
        log = server.process.log_path.read_text(errors="replace").splitlines()
    finally:
        server.stop()
    ours = [json.loads(line) for line in log if line.startswith("{")]
    (unknown,) = [line for line in ours if line.get("event") == "step"]
    assert unknown["severity"] == "WARNING"
    assert unknown["outcome"] == "unknown_run"
    assert unknown["runId"] == "no-such-run"
    assert unknown["logging.googleapis.com/trace"] == (
        f"projects/{EMULATOR_PROJECT}/traces/{TRACE_ID}"
    )
    assert unknown["logging.googleapis.com/spanId"] == "0000000000000007"
    assert not [line for line in log if "no-such-run" in line and not line.startswith("{")]


def test_a_pubsub_push_s_log_lines_carry_its_trace(firestore_emulator: str) -> None:
    env = {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": EMULATOR_PROJECT,
        "REFLUXO_REGION": "here",
        "REFLUXO_TASKS_QUEUE": "steps",
        "REFLUXO_STEP_URL": "http://127.0.0.1:9/tasks/step",
        "REFLUXO_VERIFY_OIDC": "false",
        "REFLUXO_AUTH": "iam",
        "REFLUXO_TASKS_EMULATOR_HOST": f"127.0.0.1:{free_port()}",
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "FUNCTION_TARGET": "on_message",
        "PYTHONPATH": str(ROOT),
    }
    server = start_functions_framework(ROOT / "main.py", "on_message", env=env)
    try:
        push = {"message": {"data": "bm90IGpzb24=", "messageId": "m-1"}}  # "not json"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request(
                "POST",
                "/",
                body=json.dumps(push).encode(),
                headers={
                    "Content-Type": "application/json",
                    "ce-id": "m-1",
                    "ce-specversion": "1.0",
                    "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
                    "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
                    "X-Cloud-Trace-Context": f"{TRACE_ID}/9;o=1",
                },
            )
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        assert response.status < 300, server.process.log_tail()  # acknowledged
        log = server.process.log_path.read_text(errors="replace").splitlines()
    finally:
        server.stop()
    ours = [json.loads(line) for line in log if line.startswith("{")]
    rejected = [line for line in ours if "m-1" in line.get("message", "")]
    assert len(rejected) == 1, ours
    assert rejected[0]["logging.googleapis.com/trace"] == (
        f"projects/{EMULATOR_PROJECT}/traces/{TRACE_ID}"
    )
