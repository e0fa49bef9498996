"""Plugins: every hook fires at its moment; a failing hook never breaks a run."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from refluxo import (
    ErrorPluginContext,
    NodeDefinition,
    Plugin,
    PluginContext,
    Snapshot,
    StepResult,
    WorkflowEngine,
)
from tests.support.engine import chain, echo


class Recorder(Plugin):
    name = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_workflow_start(self, snapshot: Snapshot) -> None:
        self.events.append(("start", snapshot.current_node_id))

    async def on_before_node_execution(self, ctx: PluginContext) -> None:
        self.events.append(("before", ctx.node.id))

    def on_after_node_execution(self, ctx: PluginContext) -> None:
        self.events.append(("after", (ctx.node.id, ctx.input, ctx.output)))

    async def on_node_error(self, ctx: ErrorPluginContext) -> None:
        self.events.append(("error", (ctx.node.id, str(ctx.error), ctx.attempt)))

    def on_workflow_complete(self, snapshot: Snapshot) -> None:
        self.events.append(("complete", snapshot.status))

    def on_workflow_pause(self, snapshot: Snapshot) -> None:
        self.events.append(("pause", snapshot.current_node_id))


async def test_hooks_fire_in_order_for_a_complete_run() -> None:
    recorder = Recorder()
    engine = WorkflowEngine(chain("a", "b"), {"echo": {"executor": echo}}, plugins=[recorder])
    await engine.execute(initial_node_id="a")
    assert recorder.events == [
        ("start", "a"),
        ("before", "a"),
        ("after", ("a", {"name": "a"}, {"name": "a"})),
        ("before", "b"),
        ("after", ("b", {"name": "b"}, {"name": "b"})),
        ("complete", "completed"),
    ]


async def test_pause_and_error_hooks() -> None:
    recorder = Recorder()

    def pause(*_: Any) -> StepResult:
        return StepResult(pause=True)

    def fail(*_: Any) -> StepResult:
        raise RuntimeError("bad")

    paused_engine = WorkflowEngine(
        chain("a", node_type="p"), {"p": {"executor": pause}}, plugins=[recorder]
    )
    await paused_engine.execute(initial_node_id="a")
    assert recorder.events[-2:] == [("after", ("a", {"name": "a"}, None)), ("pause", "a")]

    recorder.events.clear()
    failing = WorkflowEngine(
        chain("a", node_type="f"), {"f": {"executor": fail}}, plugins=[recorder]
    )
    final = await failing.execute(initial_node_id="a")
    assert ("error", ("a", "bad", 1)) in recorder.events
    assert final.status == "failed"
    assert not any(kind in ("complete", "pause") for kind, _ in recorder.events)


async def test_failing_hooks_are_logged_and_isolated(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Plugin):
        name = "broken"

        def on_before_node_execution(self, ctx: PluginContext) -> None:
            raise RuntimeError("hook exploded")

        async def on_workflow_complete(self, snapshot: Snapshot) -> None:
            raise ValueError("also exploded")

    recorder = Recorder()
    engine = WorkflowEngine(chain("a"), {"echo": {"executor": echo}}, plugins=[Broken(), recorder])
    with caplog.at_level(logging.ERROR, logger="refluxo.plugins"):
        final = await engine.execute(initial_node_id="a")
    assert final.status == "completed"
    assert ("before", "a") in recorder.events
    assert ("complete", "completed") in recorder.events
    messages = [record.getMessage() for record in caplog.records]
    assert any("'broken'" in m and "on_before_node_execution" in m for m in messages)
    assert any("on_workflow_complete" in m for m in messages)


async def test_plugin_context_carries_globals_and_payload() -> None:
    seen: list[PluginContext] = []

    class Spy(Plugin):
        def on_before_node_execution(self, ctx: PluginContext) -> None:
            seen.append(ctx)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(echo)}, plugins=[Spy()])
    await engine.execute(initial_node_id="a", external_payload=1, globals={"g": 2})
    assert seen[0].globals == {"g": 2}
    assert seen[0].external_payload == 1
    assert seen[0].snapshot.current_node_id == "a"
    assert seen[0].definition.executor is echo


async def test_an_observing_hook_cannot_add_to_what_is_recorded() -> None:
    """``on_after_node_execution`` got the very output being recorded, after redaction: a
    hook writing the secret into it stored it in clear."""
    from refluxo import RedactionPlugin

    class Meddling(Plugin):
        def on_after_node_execution(self, ctx: PluginContext) -> None:
            ctx.output["leak"] = ctx.globals["pw"]

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(lambda d, c, p, g: StepResult({"user": "ada"}))},
        plugins=[RedactionPlugin(), Meddling()],
    )
    final = await engine.execute(initial_node_id="a", globals={"pw": "TOPSECRETVALUE"})
    assert final.context["a"][0].output == {"user": "ada"}
    assert b"TOPSECRETVALUE" not in final.to_json()


async def test_a_hook_cannot_change_the_snapshot_stepped_nor_the_workflow() -> None:
    """``execute_step`` never changes its argument, and a node's data is the workflow's:
    a hook writing into ``ctx.snapshot.metadata`` or ``ctx.node.data`` changed both."""

    class Forging(Plugin):
        def on_before_node_execution(self, ctx: PluginContext) -> None:
            ctx.snapshot.metadata["failedReason"] = "forged"
            ctx.node.data["injected"] = 1

    engine = WorkflowEngine(
        chain("a"),
        {"echo": NodeDefinition(lambda d, c, p, g: StepResult(dict(d)))},
        plugins=[Forging()],
    )
    first = engine.create_initial_snapshot("w", "a")
    stepped = await engine.execute_step(first)
    assert first.metadata == {}
    assert "failedReason" not in stepped.metadata
    assert "injected" not in engine.workflow.nodes[0].data
    assert stepped.context["a"][0].output == {"name": "a"}


@pytest.mark.parametrize("returned", [None, 42, b"bytes"])
async def test_transform_error_returning_no_text_withholds_the_message(returned: Any) -> None:
    """``None`` was recorded as the attempt's error: in the history, a failed attempt that
    looked like a success without output."""

    class Answering(Plugin):
        def transform_error(self, ctx: Any, text: str) -> Any:
            return returned

    def boom(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise RuntimeError("down")

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(boom)}, plugins=[Answering()])
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert final.context["a"][0].error == (
        "RuntimeError: (message withheld: redaction returned no text)"
    )
