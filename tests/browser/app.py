"""The workflows the run inspector is shown with: one per state a node can be in.

* ``review``: fetch, then a human approval (pauses until resumed with ``{"ok": ...}``),
  then publish or discard.
* ``broken``: load, then a transform that always raises: the run fails there.
* ``flaky``: a call that always fails, retried every ten minutes (the run shows the retry
  and its next attempt's time for a long while).
* ``nightly``: a durable timer of an hour before the report.
* ``loop``: a node visited three times, then done.
* ``long``: a node visited 10,000 times, then done (a run of 10,001 results).
* ``approve``: a human approval (pauses until resumed, unless started with ``{"ok": ...}``),
  then publish or discard: the child runs of ``batch``.
* ``batch``: a ``map`` of ``approve`` over its input's ``items`` (at most 200 at once,
  failures collected), then a report: an item ``{"ok": ...}`` makes a child that
  completes, ``null`` one that pauses.
"""

from __future__ import annotations

from typing import Any

from refluxo import StepResult
from refluxo.runtime import App, current_step

RETRY_INTERVAL_MS = 600_000
LONG_ROUNDS = 10_000


def build_inspector_app() -> App:
    """The app served to the browser tests and the screenshot."""
    app = App()

    @app.node()
    def fetch(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"order": payload, "items": data.get("items", 3)})

    @app.node()
    def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult(payload, next_handle="yes" if payload.get("ok") else "no")

    @app.node()
    def say(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"said": data.get("text", "")})

    @app.node()
    def parse(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ValueError("cannot parse record 7: <b>unexpected</b> end of input")

    @app.node(retry_policy={"maxAttempts": 5, "interval": RETRY_INTERVAL_MS, "backoff": "fixed"})
    def call(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise ConnectionError(f"attempt {current_step().attempt}: the partner API timed out")

    @app.node()
    def count(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        done = len(context.get("count", []))
        return StepResult({"round": done + 1}, next_handle="again" if done < 2 else "done")

    @app.node()
    def tick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        done = len(context.get("tick", []))
        return StepResult(
            {"round": done + 1}, next_handle="again" if done + 1 < LONG_ROUNDS else "done"
        )

    app.workflow(
        "review",
        {
            "start": "fetch",
            "nodes": [
                {"id": "fetch", "type": "fetch", "data": {"items": 3}},
                {"id": "ask", "type": "approval"},
                {"id": "publish", "type": "say", "data": {"text": "published"}},
                {"id": "discard", "type": "say", "data": {"text": "discarded"}},
            ],
            "edges": [
                {"source": "fetch", "target": "ask"},
                {"source": "ask", "target": "publish", "sourceHandle": "yes"},
                {"source": "ask", "target": "discard", "sourceHandle": "no"},
            ],
        },
    )
    app.workflow(
        "broken",
        {
            "nodes": [
                {"id": "load", "type": "fetch"},
                {"id": "transform", "type": "parse"},
                {"id": "store", "type": "say"},
            ],
            "edges": [
                {"source": "load", "target": "transform"},
                {"source": "transform", "target": "store"},
            ],
        },
    )
    app.workflow(
        "flaky",
        {
            "nodes": [{"id": "prepare", "type": "fetch"}, {"id": "notify", "type": "call"}],
            "edges": [{"source": "prepare", "target": "notify"}],
        },
    )
    app.workflow(
        "nightly",
        {
            "nodes": [
                {"id": "sleep", "type": "wait", "data": {"hours": 1}},
                {"id": "report", "type": "say", "data": {"text": "report"}},
            ],
            "edges": [{"source": "sleep", "target": "report"}],
        },
    )
    app.workflow(
        "loop",
        {
            "start": "count",
            "nodes": [
                {"id": "count", "type": "count"},
                {"id": "finish", "type": "say", "data": {"text": "three rounds"}},
            ],
            "edges": [
                {"source": "count", "target": "count", "sourceHandle": "again"},
                {"source": "count", "target": "finish", "sourceHandle": "done"},
            ],
        },
    )
    app.workflow(
        "long",
        {
            "start": "tick",
            "nodes": [
                {"id": "tick", "type": "tick"},
                {"id": "end", "type": "say", "data": {"text": "done"}},
            ],
            "edges": [
                {"source": "tick", "target": "tick", "sourceHandle": "again"},
                {"source": "tick", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    app.workflow(
        "approve",
        {
            "start": "ask",
            "nodes": [
                {"id": "ask", "type": "approval"},
                {"id": "publish", "type": "say", "data": {"text": "published"}},
                {"id": "discard", "type": "say", "data": {"text": "discarded"}},
            ],
            "edges": [
                {"source": "ask", "target": "publish", "sourceHandle": "yes"},
                {"source": "ask", "target": "discard", "sourceHandle": "no"},
            ],
        },
    )
    app.workflow(
        "batch",
        {
            "start": "prepare",
            "nodes": [
                {"id": "prepare", "type": "fetch"},
                {
                    "id": "each",
                    "type": "map",
                    "data": {
                        "items": "{{ nodes.prepare.output.order.items }}",
                        "workflow": "approve",
                        "concurrency": 200,
                        "failure": "collect",
                    },
                },
                {"id": "report", "type": "say", "data": {"text": "all decided"}},
            ],
            "edges": [
                {"source": "prepare", "target": "each"},
                {"source": "each", "target": "report"},
            ],
        },
    )
    return app
