"""The public API is a contract: the exported names are pinned, and the engine needs no web
framework, no CLI library and no cloud library."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import refluxo
import refluxo.runtime

ROOT = Path(__file__).resolve().parents[1]


def test_the_engine_exports_exactly_its_contract() -> None:
    assert sorted(refluxo.__all__) == [
        "Context",
        "DefaultErrorHandler",
        "Edge",
        "ErrorHandler",
        "ErrorPluginContext",
        "Executor",
        "ExpressionError",
        "InvalidResult",
        "LimitExceededError",
        "MemoryContext",
        "Node",
        "NodeDefinition",
        "NodeResult",
        "NodeValidationError",
        "Plugin",
        "PluginContext",
        "RedactionPlugin",
        "RefluxoError",
        "RetryPolicy",
        "RetryState",
        "SchemaValidator",
        "Snapshot",
        "SnapshotStatus",
        "SnapshotTooDeep",
        "StepResult",
        "TransformEngine",
        "TransientError",
        "ValidationIssue",
        "ValidationResult",
        "Validator",
        "WorkflowDefinition",
        "WorkflowDefinitionError",
        "WorkflowEngine",
        "__version__",
        "thaw",
    ]
    for name in refluxo.__all__:
        assert hasattr(refluxo, name), name


def test_the_runtime_exports_exactly_its_contract() -> None:
    assert sorted(refluxo.runtime.__all__) == [
        "App",
        "AppendedResult",
        "CommitResult",
        "CommitToken",
        "DefinitionStore",
        "Delivery",
        "DeliveryResult",
        "Dispatcher",
        "HistoryReader",
        "Outcome",
        "Payload",
        "RunPage",
        "RunRecord",
        "RunService",
        "RunStore",
        "RuntimeLimits",
        "Scheduler",
        "SnapshotStore",
        "Started",
        "StepBudget",
        "StepCommit",
        "StepInfo",
        "TimelineEntry",
        "WorkflowSpec",
        "current_step",
    ]
    for name in refluxo.runtime.__all__:
        assert hasattr(refluxo.runtime, name), name


def test_the_engine_and_runtime_run_without_web_cli_or_cloud_libraries() -> None:
    """With flask, werkzeug, click and google made unimportable, a workflow still runs."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        for name in ("flask", "werkzeug", "click", "google", "functions_framework"):
            sys.modules[name] = None  # any import of them now fails
        from refluxo import StepResult, WorkflowEngine
        from refluxo.expressions import JexlTransformEngine
        from refluxo.runtime import App, current_step

        def double(data, context, payload, globals):
            return StepResult(data["n"] * 2)

        engine = WorkflowEngine(
            {"nodes": [{"id": "a", "type": "double", "data": {"n": "{{ 21 }}"}}]},
            {"double": {"executor": double}},
            transform_engines=[JexlTransformEngine()],
        )
        done = asyncio.run(engine.execute(initial_node_id="a"))
        app = App()
        app.node()(double)
        print(done.status, done.context["a"][0].output, sorted(app.node_types)[:2])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["completed", "42", "['call',", "'double']"]
