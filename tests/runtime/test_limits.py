"""Limits, enforced with clear errors: workflow size, node data, outputs, steps per run."""

from __future__ import annotations

from typing import Any

import pytest

from refluxo import LimitExceededError, StepResult
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.limits import RuntimeLimits
from tests.support.clock import FakeClock


def test_workflows_too_large_are_refused_at_registration() -> None:
    app = App(limits=RuntimeLimits(max_nodes=3, max_edges=2, max_node_data_bytes=100))
    nodes = [{"id": f"n{i}", "type": "trigger"} for i in range(4)]
    with pytest.raises(LimitExceededError, match="'big' has 4 nodes; the limit is 3"):
        app.workflow("big", {"nodes": nodes})
    edges = [{"source": "n0", "target": "n1"}] * 3
    with pytest.raises(LimitExceededError, match="3 edges; the limit is 2"):
        app.workflow("wide", {"nodes": nodes[:2], "edges": edges})
    with pytest.raises(LimitExceededError, match=r"node 'n0' has 1[0-9]{2} bytes of data"):
        app.workflow("heavy", {"nodes": [{"id": "n0", "type": "trigger", "data": "x" * 120}]})


def make_app(clock: FakeClock, limits: RuntimeLimits) -> App:
    app = App(clock=clock, limits=limits)

    @app.node()
    def produce(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult("x" * data["size"])

    @app.node()
    def spin(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(len(context.get("s", [])))

    app.workflow("produce", {"nodes": [{"id": "p", "type": "produce", "data": {"size": 5000}}]})
    app.workflow(
        "forever",
        {"nodes": [{"id": "s", "type": "spin"}], "edges": [{"source": "s", "target": "s"}]},
    )
    return app


def test_an_output_over_the_limit_fails_the_run_with_the_reason(
    tmp_path: Any, clock: FakeClock
) -> None:
    app = make_app(clock, RuntimeLimits(max_output_bytes=1000))
    with EmbeddedRuntime(app, tmp_path / "l.db", workers=0, synchronous="OFF") as runtime:
        run = runtime.service.start("produce").record
        runtime.scheduler.drain()
        record = runtime.service.get(run.run_id)
        assert record.status == "failed"
        assert record.snapshot.metadata["failedReason"] == (
            "the output of node 'p' is 5002 bytes; the limit is 1000 bytes"
        )
        assert record.result_count == 0  # nothing oversized was stored
        assert runtime.scheduler.pending() == []


def test_a_run_stops_at_the_step_limit(tmp_path: Any, clock: FakeClock) -> None:
    app = make_app(clock, RuntimeLimits(max_steps_per_run=25))
    with EmbeddedRuntime(app, tmp_path / "l.db", workers=0, synchronous="OFF") as runtime:
        run = runtime.service.start("forever").record
        runtime.scheduler.drain()
        record = runtime.service.get(run.run_id)
        assert record.status == "failed"
        assert record.snapshot.metadata["failedReason"] == "Step limit exceeded"
        assert record.result_count == 25
