"""Workflows shared by the benchmarks."""

from __future__ import annotations

from typing import Any

from refluxo import StepResult
from refluxo.runtime import App


def chain_app(length: int) -> App:
    """An app with one workflow, "chain": ``length`` quick nodes, no expressions."""
    app = App(transform_engines=[])

    @app.node()
    def quick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"i": data["i"]})

    app.workflow(
        "chain",
        {
            "nodes": [{"id": f"n{i}", "type": "quick", "data": {"i": i}} for i in range(length)],
            "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(length - 1)],
        },
    )
    return app
