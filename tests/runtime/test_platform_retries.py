"""A step the platform keeps retrying without an answer (timeouts, crashes) counts as a
failed attempt of its node, so the node's retry policy bounds it."""

from __future__ import annotations

from typing import Any

from flask import Request
from werkzeug.test import EnvironBuilder

from refluxo import StepResult
from refluxo.api.http import HttpApi
from refluxo.backends.memory import MemoryStore
from refluxo.runtime import App, Delivery, Dispatcher, RunService
from tests.support.clock import FakeClock
from tests.support.stored import ListScheduler


def service(clock: FakeClock, calls: list[int], limit: int = 3) -> RunService:
    app = App(clock=clock)

    @app.node(retry_policy={"maxAttempts": 1, "interval": 1000})
    def slow(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        calls.append(1)
        return StepResult("done")

    app.workflow("w", {"nodes": [{"id": "a", "type": "slow"}]})
    return RunService(Dispatcher(app, MemoryStore(), ListScheduler(), max_platform_retries=limit))


def test_past_the_limit_the_step_is_a_failed_attempt_and_the_policy_decides(
    clock: FakeClock,
) -> None:
    calls: list[int] = []
    runs = service(clock, calls)
    run = runs.start("w", None, run_id="r").record
    runs.deliver(Delivery(run.run_id, 0, platform_retries=4))
    record = runs.get("r")
    assert calls == []  # the node did not run again
    assert record.status == "error"  # its policy retries once, later
    assert record.snapshot.retry_state is not None
    assert record.snapshot.retry_state.next_retry_at == clock.now + 1000
    errors = [entry.result.error for entry in runs.timeline("r")]
    assert errors == [
        "StepUnanswered: node 'a' got no answer in 5 deliveries (timeouts or crashes)"
    ]

    due = int(record.snapshot.retry_state.next_retry_at or 0)
    clock.advance(1000)
    runs.deliver(Delivery(run.run_id, record.version, due))
    assert runs.get("r").status == "completed"  # a fresh delivery runs the node normally
    assert calls == [1]
    runs.close()


def test_within_the_limit_the_step_runs(clock: FakeClock) -> None:
    calls: list[int] = []
    runs = service(clock, calls)
    run = runs.start("w", None, run_id="r").record
    runs.deliver(Delivery(run.run_id, 0, platform_retries=3))
    assert runs.get("r").status == "completed"
    assert calls == [1]
    runs.close()


def test_the_step_route_reads_the_cloud_tasks_retry_count(clock: FakeClock) -> None:
    calls: list[int] = []
    runs = service(clock, calls, limit=0)
    run = runs.start("w", None, run_id="r").record
    api = HttpApi(runs)
    environ = EnvironBuilder(
        path="/tasks/step",
        method="POST",
        json={"runId": run.run_id, "version": 0},
        headers=[("X-CloudTasks-TaskRetryCount", "1"), ("Host", "localhost")],
    ).get_environ()
    response = api(Request(environ))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert calls == []
    assert runs.get("r").status == "error"
    runs.close()


def test_the_api_function_serves_no_step_route(clock: FakeClock) -> None:
    from refluxo.api.routes import CALLER_ROUTES

    runs = service(clock, [])
    api = HttpApi(runs, routes=CALLER_ROUTES)
    environ = EnvironBuilder(
        path="/tasks/step",
        method="POST",
        json={"runId": "x", "version": 0},
        headers=[("Host", "localhost")],
    ).get_environ()
    assert api(Request(environ)).status_code == 404
    document = HttpApi(runs, routes=CALLER_ROUTES)(
        Request(EnvironBuilder(path="/openapi.json", headers=[("Host", "localhost")]).get_environ())
    ).get_json()
    assert "/tasks/step" not in document["paths"]
    assert "/runs" in document["paths"]
    runs.close()


def test_retries_that_were_answered_do_not_count_as_unanswered(clock: FakeClock) -> None:
    """A store or certificate outage is answered 429: Cloud Tasks counts it in its
    execution count, so twenty such retries leave the node untouched and then it runs."""
    calls: list[int] = []
    runs = service(clock, calls, limit=2)
    run = runs.start("w", None, run_id="r").record
    api = HttpApi(runs)
    environ = EnvironBuilder(
        path="/tasks/step",
        method="POST",
        json={"runId": run.run_id, "version": 0},
        headers=[
            ("X-CloudTasks-TaskRetryCount", "21"),
            ("X-CloudTasks-TaskExecutionCount", "20"),
            ("Host", "localhost"),
        ],
    ).get_environ()
    response = api(Request(environ))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert calls == [1]
    assert runs.get("r").status == "completed"
    runs.close()
