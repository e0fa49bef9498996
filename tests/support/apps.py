"""The app runtime tests share: a few node types and workflows on a fake clock."""

from __future__ import annotations

from typing import Any

from refluxo import StepResult
from refluxo.runtime import App, current_step
from tests.support.clock import FakeClock


def build_app(clock: FakeClock) -> App:
    """Node types used across runtime tests, and a few workflows."""
    app = App(clock=clock)

    @app.node()
    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    @app.node()
    def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult(payload, next_handle="yes" if payload.get("ok") else "no")

    @app.node(retry_policy={"maxAttempts": 3, "interval": 5000, "backoff": "fixed"})
    def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if current_step().attempt <= data.get("fail", 0):
            raise ConnectionError(f"attempt {current_step().attempt} failed")
        return StepResult({"attempt": current_step().attempt})

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        if index < data["count"]:
            return StepResult(
                {"index": index, "blob": "x" * data.get("size", 0)}, next_handle="loop"
            )
        return StepResult({"done": index}, next_handle="done")

    app.workflow(
        "chain",
        {
            "nodes": [{"id": f"n{i}", "type": "echo", "data": {"i": i}} for i in range(5)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(4)],
        },
    )
    app.workflow(
        "approval",
        {
            "start": "ask",
            "nodes": [
                {"id": "ask", "type": "approval"},
                {"id": "yes", "type": "echo", "data": {"answer": "yes"}},
                {"id": "no", "type": "echo", "data": {"answer": "no"}},
            ],
            "edges": [
                {"source": "ask", "target": "yes", "sourceHandle": "yes"},
                {"source": "ask", "target": "no", "sourceHandle": "no"},
            ],
        },
    )
    app.workflow(
        "flaky",
        {
            "nodes": [
                {"id": "f", "type": "flaky", "data": {"fail": 2}},
                {"id": "after", "type": "echo"},
            ],
            "edges": [{"source": "f", "target": "after"}],
        },
    )
    app.workflow(
        "loop",
        {
            "start": "it",
            "nodes": [
                {"id": "it", "type": "iterate", "data": {"count": 20}},
                {"id": "body", "type": "echo", "data": {"tag": "body"}},
                {"id": "end", "type": "echo", "data": {"tag": "end"}},
            ],
            "edges": [
                {"source": "it", "target": "body", "sourceHandle": "loop"},
                {"source": "body", "target": "it"},
                {"source": "it", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    return app
