"""On the embedded default: a node's code that raises what is not an ``Exception`` fails its
run and leaves every worker delivering, and an app's globals stay out of the database
whatever channel their values take, unless the app says otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from refluxo import RedactionPlugin, StepResult
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App, StepBudget
from tests.support.waiting import wait_until

TOKEN = "tok_SECRET_123456"


def database_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.iterdir() if path.is_file())


def status_of(runtime: EmbeddedRuntime, run_id: str) -> str:
    record = runtime.store.load_run(run_id)
    assert record is not None
    return str(record.snapshot.status.value)


FAILING = (
    "awaits_a_cancelled_task",
    "raises_cancelled",
    "exits",
    "interrupts",
    "interrupts_awaiting",
)
"""The node types of the test below that fail their node, in the order it checks them."""


def test_nodes_raising_what_is_not_an_exception_fail_and_the_workers_go_on(
    tmp_path: Path,
) -> None:
    app = App()

    @app.node()
    async def awaits_a_cancelled_task(data: Any, context: Any, payload: Any, globals: Any) -> Any:
        other = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        other.cancel()
        await other

    @app.node()
    def raises_cancelled(data: Any, context: Any, payload: Any, globals: Any) -> Any:
        raise asyncio.CancelledError()

    @app.node()
    def exits(data: Any, context: Any, payload: Any, globals: Any) -> Any:
        raise SystemExit(3)

    @app.node()
    def interrupts(data: Any, context: Any, payload: Any, globals: Any) -> Any:
        raise KeyboardInterrupt("not a signal: no signal reaches a worker")

    @app.node()
    async def interrupts_awaiting(data: Any, context: Any, payload: Any, globals: Any) -> Any:
        await asyncio.sleep(0)
        raise KeyboardInterrupt("raised on the runtime's event loop")

    @app.node()
    def fine(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"ok": True})

    for name in (*FAILING, "fine"):
        app.workflow(name, {"nodes": [{"id": "a", "type": name}], "edges": []})
    with EmbeddedRuntime(app, tmp_path / "runs.db", workers=2, synchronous="NORMAL") as runtime:
        failing = [runtime.service.start(name, {}).record.run_id for name in FAILING * 2]
        wait_until(
            lambda: all(status_of(runtime, run) == "failed" for run in failing),
            20,
            "every failing run to fail",
        )
        reasons = [runtime.store.load_run(run).snapshot.metadata["failedReason"] for run in failing]  # type: ignore[union-attr]
        assert ["NodeCancelled" in r for r in reasons[:2]] == [True, True]
        assert "NodeExit" in reasons[2]
        assert "NodeAborted: the node's code raised KeyboardInterrupt" in reasons[3]
        assert "NodeAborted: the node's code raised KeyboardInterrupt" in reasons[4]
        after = runtime.service.start("fine", {}).record.run_id
        wait_until(lambda: status_of(runtime, after) == "completed", 20, "a run after them")


def app_quoting_its_global(**options: Any) -> App:
    app = App(globals={"tenant": TOKEN}, **options)

    @app.node()
    def lookup(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(dict(data))

    @app.node()
    def says(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"said": f"tenant {globals['tenant']}"})

    app.workflow(
        "expression",
        {"nodes": [{"id": "a", "type": "lookup", "data": {"x": "{{ input.no[globals.tenant] }}"}}]},
    )
    app.workflow("output", {"nodes": [{"id": "a", "type": "says"}]})
    return app


@pytest.mark.parametrize("workflow", ["expression", "output"])
def test_an_app_with_globals_keeps_their_values_out_of_the_database(
    tmp_path: Path, workflow: str
) -> None:
    runtime = EmbeddedRuntime(app_quoting_its_global(), tmp_path / "runs.db", workers=0)
    try:
        runtime.service.start(workflow, {})
        runtime.scheduler.drain()
    finally:
        runtime.stop()
    assert TOKEN.encode() not in database_bytes(tmp_path)
    assert b"[REDACTED]" in database_bytes(tmp_path)


def test_an_app_that_brings_a_redaction_plugin_without_masking_globals_records_them(
    tmp_path: Path,
) -> None:
    app = app_quoting_its_global(plugins=[RedactionPlugin(mask_globals=False)])
    runtime = EmbeddedRuntime(app, tmp_path / "runs.db", workers=0)
    try:
        run = runtime.service.start("output", {}).record.run_id
        runtime.scheduler.drain()
        record = runtime.store.load_run(run)
        assert record is not None
        assert record.snapshot.status.value == "completed"
    finally:
        runtime.stop()
    assert f"tenant {TOKEN}".encode() in database_bytes(tmp_path)


def app_with_globals_provider(provider: Any) -> App:
    app = App(globals=provider)

    @app.node(retry_policy={"maxAttempts": 1, "interval": 0})
    def fine(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"ok": True})

    app.workflow("fine", {"nodes": [{"id": "a", "type": "fine"}]})
    return app


def test_a_globals_provider_that_fails_fails_the_node_by_its_retry_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its text may quote a secret that nothing could mask: only its type is told."""

    def provider() -> dict[str, Any]:
        raise RuntimeError(f"the vault refused token {TOKEN}")

    runtime = EmbeddedRuntime(app_with_globals_provider(provider), tmp_path / "runs.db", workers=0)
    try:
        run = runtime.service.start("fine", {}).record.run_id
        while runtime.scheduler.drain():  # the retry is due at once (interval 0)
            pass
        record = runtime.store.load_run(run)
        assert record is not None
        assert record.snapshot.metadata["failedReason"] == (
            "node 'a' failed after 2 attempts: GlobalsUnavailable: the app's globals could "
            "not be read: its provider raised RuntimeError (message withheld)"
        )
    finally:
        runtime.stop()
    assert TOKEN not in caplog.text
    assert TOKEN.encode() not in database_bytes(tmp_path)


def test_a_globals_provider_failing_for_a_while_delays_the_step_without_failing_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outage = [True]

    def provider() -> dict[str, Any]:
        if outage[0]:
            raise TransientError(f"the secret store refused {TOKEN}")
        return {"token": TOKEN}

    runtime = EmbeddedRuntime(app_with_globals_provider(provider), tmp_path / "runs.db", workers=0)
    try:
        run = runtime.service.start("fine", {}).record.run_id
        runtime.scheduler.drain()
        assert status_of(runtime, run) == "active"
        assert [d.run_id for d in runtime.scheduler.pending()] == [run]  # redelivered later
        outage[0] = False
        for delivery in runtime.scheduler.pending():
            runtime.service.deliver(delivery)
        assert status_of(runtime, run) == "completed"
    finally:
        runtime.stop()
    assert "globals provider raised TransientError (message withheld)" in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("batch", [1, 10])
def test_a_node_changing_an_earlier_output_fails_at_any_batch_size(
    tmp_path: Path, batch: int
) -> None:
    app = App()

    @app.node()
    def src(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"a": [1]})

    @app.node()
    def meddle(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        context["p"][-1].output["a"].append(2)
        return StepResult({})

    app.workflow(
        "meddling",
        {
            "nodes": [{"id": "p", "type": "src"}, {"id": "m", "type": "meddle"}],
            "edges": [{"source": "p", "target": "m"}],
        },
    )
    runtime = EmbeddedRuntime(
        app, tmp_path / "runs.db", workers=0, budget=StepBudget(max_steps=batch)
    )
    try:
        run = runtime.service.start("meddling", {}).record.run_id
        runtime.scheduler.drain()
        record = runtime.store.load_run(run)
        assert record is not None
        assert "recorded outputs are read-only" in record.snapshot.metadata["failedReason"]
        assert runtime.service.timeline(run)[0].result.output == {"a": [1]}
    finally:
        runtime.stop()
