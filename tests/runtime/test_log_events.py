"""Operational events: what the dispatcher logs once a delivery's outcome is committed.

``step`` once per executed step (whatever the batch size) and per delivery that committed
nothing; ``attempt_failed`` for each attempt that will be retried; ``run_failed`` when a
delivery leaves its run failed. The texts are what the store kept: secrets masked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from refluxo import RedactionPlugin, StepResult
from refluxo.backends.memory import MemoryStore
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.logs import JsonFormatter, TextFormatter
from refluxo.plugins import ErrorPluginContext, Plugin
from refluxo.runtime import App, Delivery, Dispatcher, RunService, current_step
from refluxo.runtime.dispatcher import Outcome, StepBudget
from refluxo.runtime.events_log import EVENT_FIELD
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.stored import ListScheduler


@dataclass
class Harness:
    """A run service on the memory store whose deliveries a test hands over one by one."""

    service: RunService
    scheduler: ListScheduler
    clock: FakeClock

    def drain(self) -> int:
        """Deliver everything scheduled, moving the clock to each due time; how many."""
        count = 0
        while self.scheduler.queue:
            delivery = self.scheduler.queue.pop(0)
            self.clock.now = max(self.clock.now, delivery.due_at)
            asyncio.run(self.service.dispatcher.deliver(delivery))
            count += 1
        return count


def harness(app: App, clock: FakeClock, budget: StepBudget | None = None) -> Harness:
    scheduler = ListScheduler()
    service = RunService(Dispatcher(app, MemoryStore(), scheduler, budget=budget))
    return Harness(service, scheduler, clock)


@pytest.fixture
def runs(clock: FakeClock) -> Iterator[Harness]:
    runs = harness(build_app(clock), clock)
    yield runs
    runs.service.close()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of every ``name`` event logged so far, with their level and message."""
    found = []
    for record in caplog.records:
        fields = getattr(record, EVENT_FIELD, None)
        if fields and fields["event"] == name:
            found.append({**fields, "level": record.levelno, "message": record.getMessage()})
    return found


def steps_of(caplog: pytest.LogCaptureFixture, run_id: str) -> list[tuple[str, str, int]]:
    return [
        (event["node"], event["outcome"], event["version"])
        for event in events(caplog, "step")
        if event["runId"] == run_id
    ]


# -- step ----------------------------------------------------------------------------------


def test_a_completed_run_logs_one_step_line_per_step(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("chain").record
    assert runs.drain() == 5
    assert runs.service.get(run.run_id).status == "completed"
    assert steps_of(logged, run.run_id) == [(f"n{i}", "completed", i + 1) for i in range(5)]
    lines = events(logged, "step")
    assert {line["workflow"] for line in lines} == {"chain"}
    assert {line["level"] for line in lines} == {logging.INFO}
    assert [line["status"] for line in lines] == ["active"] * 4 + ["completed"]
    assert events(logged, "run_failed") == events(logged, "attempt_failed") == []


@pytest.mark.parametrize("max_steps", [1, 3, 7, 1000])
def test_a_batched_delivery_logs_each_of_its_steps_once(
    clock: FakeClock, logged: pytest.LogCaptureFixture, max_steps: int
) -> None:
    runs = harness(build_app(clock), clock, StepBudget(max_steps=max_steps))
    run = runs.service.start("loop").record
    deliveries = runs.drain()
    record = runs.service.get(run.run_id)
    assert record.status == "completed"
    timeline = [(entry.node_id, "completed") for entry in runs.service.timeline(run.run_id)]
    steps = steps_of(logged, run.run_id)
    assert [(node, outcome) for node, outcome, _ in steps] == timeline
    assert [version for _, _, version in steps] == list(range(1, record.version + 1))
    assert deliveries == -(-len(timeline) // max_steps)  # the batches really were batches
    runs.service.close()


def test_the_embedded_runtime_logs_its_batches_step_by_step(
    clock: FakeClock, tmp_path: Path, logged: pytest.LogCaptureFixture
) -> None:
    runtime = EmbeddedRuntime(
        build_app(clock),
        tmp_path / "runs.db",
        workers=0,
        synchronous="NORMAL",
        budget=StepBudget(max_steps=4),
    )
    try:
        run = runtime.service.start("loop").record
        runtime.scheduler.drain()
        record = runtime.service.get(run.run_id)
        assert record.status == "completed"
        steps = steps_of(logged, run.run_id)
        assert len(steps) == record.result_count == record.version
    finally:
        runtime.stop()


def test_a_pause_is_a_step_and_the_resumed_run_goes_on(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("approval").record
    runs.drain()
    assert steps_of(logged, run.run_id) == [("ask", "paused", 1)]
    assert events(logged, "step")[0]["status"] == "paused"
    runs.service.resume(run.run_id, {"ok": True})
    runs.drain()
    assert steps_of(logged, run.run_id)[1:] == [("ask", "completed", 3), ("yes", "completed", 4)]


def test_a_delivery_that_commits_nothing_logs_why_and_no_step(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("chain").record
    first = runs.scheduler.queue[0]
    runs.drain()
    logged.clear()
    again = asyncio.run(runs.service.dispatcher.deliver(first))  # a duplicate task
    assert again.outcome is Outcome.STALE
    missing = asyncio.run(runs.service.dispatcher.deliver(Delivery("no-such-run", 0)))
    assert missing.outcome is Outcome.UNKNOWN_RUN
    lines = events(logged, "step")
    assert [(line["runId"], line["outcome"], line["level"]) for line in lines] == [
        (run.run_id, "stale", logging.INFO),
        ("no-such-run", "unknown_run", logging.WARNING),
    ]
    assert lines[0]["version"] == 0
    assert lines[0]["storedVersion"] == 5


def test_a_lost_race_logs_the_version_stored_by_the_winner(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("chain").record
    first = runs.scheduler.queue.pop(0)
    asyncio.run(runs.service.dispatcher.deliver(first))  # the winner: version 0 -> 1
    logged.clear()
    # A copy that read the run before the winner committed, and commits after it.
    lost = asyncio.run(runs.service.dispatcher.deliver(first, known=run))
    assert lost.outcome is Outcome.LOST_RACE
    (line,) = events(logged, "step")
    assert (line["outcome"], line["version"], line["storedVersion"]) == ("lost_race", 0, 1)
    assert lost.record is not None
    assert line["node"] == lost.record.snapshot.current_node_id


class FailingOnce(ListScheduler):
    """A scheduler whose next call, once armed, fails as a transient outage would."""

    armed = False

    def schedule(self, delivery: Delivery) -> None:
        if self.armed:
            self.armed = False
            raise TransientError("the queue is unavailable")
        super().schedule(delivery)


def test_a_step_committed_before_scheduling_failed_is_logged_once(
    clock: FakeClock, logged: pytest.LogCaptureFixture
) -> None:
    scheduler = FailingOnce()
    service = RunService(Dispatcher(build_app(clock), MemoryStore(), scheduler))
    run = service.start("chain").record
    first = scheduler.queue.pop()
    scheduler.armed = True
    with pytest.raises(TransientError):  # committed, then scheduling failed
        asyncio.run(service.dispatcher.deliver(first))
    assert service.get(run.run_id).version == 1
    again = asyncio.run(service.dispatcher.deliver(first))  # the platform redelivers it
    assert again.outcome is Outcome.STALE
    assert [(e["node"], e["outcome"]) for e in events(logged, "step")] == [
        ("n0", "completed"),
        ("n1", "stale"),
    ]
    service.close()


# -- attempt_failed and run_failed ---------------------------------------------------------


def test_a_retried_node_logs_each_failed_attempt(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("flaky").record
    runs.drain()
    assert runs.service.get(run.run_id).status == "completed"
    failed = events(logged, "attempt_failed")
    assert [(e["node"], e["attempt"], e["error"]) for e in failed] == [
        ("f", 1, "ConnectionError: attempt 1 failed"),
        ("f", 2, "ConnectionError: attempt 2 failed"),
    ]
    assert {e["level"] for e in failed} == {logging.WARNING}
    assert {e["workflow"] for e in failed} == {"flaky"}
    assert [(node, outcome) for node, outcome, _ in steps_of(logged, run.run_id)] == [
        ("f", "retrying"),
        ("f", "retrying"),
        ("f", "completed"),
        ("after", "completed"),
    ]
    assert events(logged, "run_failed") == []


def doomed_app(clock: FakeClock) -> App:
    app = build_app(clock)

    @app.node()
    def unstorable(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"big": "x" * (app.limits.max_output_bytes + 1)})

    app.workflow("doomed", {"nodes": [{"id": "f", "type": "flaky", "data": {"fail": 9}}]})
    app.workflow(
        "unstorable",
        {
            "nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "unstorable"}],
            "edges": [{"source": "a", "target": "b"}],
        },
    )
    return app


def test_a_failed_run_logs_run_failed_with_its_workflow(
    clock: FakeClock, logged: pytest.LogCaptureFixture
) -> None:
    runs = harness(doomed_app(clock), clock)
    run = runs.service.start("doomed").record
    runs.drain()
    record = runs.service.get(run.run_id)
    assert record.status == "failed"
    (failed,) = events(logged, "run_failed")
    assert failed["workflow"] == "doomed"
    assert failed["runId"] == run.run_id
    assert failed["node"] == "f"
    assert failed["level"] == logging.ERROR
    assert failed["failedReason"] == record.snapshot.metadata["failedReason"]
    assert failed["message"] == failed["failedReason"]
    assert failed["failedReason"].startswith("node 'f' failed after 4 attempts")
    outcomes = [outcome for _, outcome, _ in steps_of(logged, run.run_id)]
    assert outcomes == ["retrying"] * 3 + ["failed"]
    assert [e["attempt"] for e in events(logged, "attempt_failed")] == [1, 2, 3]
    runs.service.close()


@pytest.mark.parametrize("max_steps", [1, 5])
def test_a_failure_no_result_explains_is_still_a_step(
    clock: FakeClock, logged: pytest.LogCaptureFixture, max_steps: int
) -> None:
    """An output the store cannot keep fails the run at that step, without a result."""
    runs = harness(doomed_app(clock), clock, StepBudget(max_steps=max_steps))
    run = runs.service.start("unstorable").record
    runs.drain()
    assert runs.service.get(run.run_id).status == "failed"
    assert steps_of(logged, run.run_id) == [("a", "completed", 1), ("b", "failed", 2)]
    (failed,) = events(logged, "run_failed")
    assert (failed["node"], failed["workflow"]) == ("b", "unstorable")
    assert "bytes; the limit is" in failed["failedReason"]
    runs.service.close()


def test_a_cancelled_run_is_no_failure_to_alert_on(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("approval").record
    runs.drain()
    runs.service.cancel(run.run_id)
    runs.drain()
    assert runs.service.get(run.run_id).status == "failed"
    assert events(logged, "run_failed") == []


# -- secrets -------------------------------------------------------------------------------

TOKEN = "tok_live_7Gq2LxWm9Pz"
PASSWORD = "correct-horse-battery-staple"


def secret_app(clock: FakeClock) -> App:
    """Secrets in globals, in node input, in outputs and in exception messages."""
    app = App(
        clock=clock,
        globals=lambda: {"token": TOKEN, "db": {"password": PASSWORD}},
        plugins=[RedactionPlugin()],
    )

    @app.node(retry_policy={"maxAttempts": 2, "interval": 10})
    def call_api(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if current_step().attempt == 1:
            raise ConnectionError(f"timeout calling with {data['authorization']}")
        return StepResult({"echo": data["authorization"], "password": PASSWORD})

    @app.node(retry_policy={"maxAttempts": 1, "interval": 10})
    def leak(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise PermissionError(f"denied for {globals['db']['password']} / {TOKEN.upper()}")

    @app.node()
    def approve(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult({"by": globals["db"]["password"]})

    app.workflow(
        "uses-secrets",
        {
            "nodes": [
                {
                    "id": "call",
                    "type": "call_api",
                    "data": {"authorization": "Bearer {{ globals.token }}"},
                },
                {"id": "ask", "type": "approve"},
                {"id": "leak", "type": "leak"},
            ],
            "edges": [{"source": "call", "target": "ask"}, {"source": "ask", "target": "leak"}],
        },
    )
    return app


@pytest.mark.parametrize("max_steps", [1, 10])
def test_no_secret_reaches_a_log_line(
    clock: FakeClock, logged: pytest.LogCaptureFixture, max_steps: int
) -> None:
    runs = harness(secret_app(clock), clock, StepBudget(max_steps=max_steps))
    run = runs.service.start("uses-secrets").record
    runs.drain()
    runs.service.resume(run.run_id, {"ok": True})
    runs.drain()
    assert runs.service.get(run.run_id).status == "failed"
    # Every kind of event was logged, with the masked texts...
    (failed,) = events(logged, "run_failed")
    assert "[REDACTED]" in failed["failedReason"]
    attempts = events(logged, "attempt_failed")
    assert [(e["node"], e["attempt"]) for e in attempts] == [("call", 1), ("leak", 1)]
    assert all("[REDACTED]" in e["error"] for e in attempts)
    # ...and no line, however written, holds a secret in any spelling.
    formatters = (JsonFormatter("p"), TextFormatter())
    lines = [f.format(record) for record in logged.records for f in formatters]
    assert len(lines) > 10
    for line in lines:
        for secret in (TOKEN, PASSWORD, TOKEN.upper()):
            assert secret not in line, line
    runs.service.close()


class BrokenHooks(Plugin):
    """A plugin whose error hooks fail while the node's error (with a secret) is handled."""

    def on_node_error(self, ctx: ErrorPluginContext) -> Any:
        raise RuntimeError("hook broke")

    def transform_error(self, ctx: ErrorPluginContext, text: str) -> Any:
        raise RuntimeError("transform broke")


def test_a_failing_error_hook_logs_no_secret_and_no_chained_error(
    clock: FakeClock, logged: pytest.LogCaptureFixture
) -> None:
    app = App(
        clock=clock,
        globals=lambda: {"token": TOKEN},
        plugins=[RedactionPlugin(mask_globals=True), BrokenHooks()],
    )

    @app.node()
    def leak(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise PermissionError(f"denied for {globals['token']}")

    app.workflow("w", {"nodes": [{"id": "a", "type": "leak"}]})
    runs = harness(app, clock)
    runs.service.start("w")
    runs.drain()
    hook_lines = [r for r in logged.records if "failed in on_node_error" in r.getMessage()]
    assert hook_lines, "the failing hook was not logged"
    assert "RuntimeError (message withheld)" in hook_lines[0].getMessage()
    formatters = (JsonFormatter("p"), TextFormatter())
    for record in logged.records:
        for formatter in formatters:
            assert TOKEN not in formatter.format(record)
    runs.service.close()


def test_a_huge_message_is_clipped_and_a_line_break_cannot_forge_a_text_line() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a" * 2_000_000, None, None)
    assert len(JsonFormatter("p").format(record)) < 70_000
    forged = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "boom\n2026-01-01 00:00:00,000 ERROR forged", None, None
    )
    line = TextFormatter().format(forged)
    assert "\n" not in line
    assert "boom\\n2026" in line
    try:
        raise ValueError("first\nline two")
    except ValueError:
        import sys

        with_traceback = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "m", None, sys.exc_info()
        )
    lines = TextFormatter().format(with_traceback).split("\n")
    assert all(line.startswith("    ") for line in lines[1:])


# -- run_cancelled --------------------------------------------------------------------------


def test_a_cancel_logs_one_warning_line_with_the_reason_and_no_run_failed(
    runs: Harness, logged: pytest.LogCaptureFixture
) -> None:
    run = runs.service.start("approval").record
    runs.drain()
    runs.service.cancel(run.run_id, "not needed tonight")

    [line] = events(logged, "run_cancelled")
    assert line["runId"] == run.run_id
    assert line["level"] == logging.WARNING
    assert line["failedReason"] == "not needed tonight"
    assert line["message"] == "run cancelled: not needed tonight"
    assert events(logged, "run_failed") == []
