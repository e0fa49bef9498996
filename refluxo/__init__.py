"""refluxo: a stateless, snapshot-based, step-by-step workflow engine.

A workflow is a JSON graph of nodes and edges; node types are Python executors. The engine
takes a :class:`Snapshot`, executes one node, and returns a new snapshot, so a run can be
stored anywhere and continued anywhere. Snapshots are wire-compatible with the TypeScript
library Refluxo (``@refluxo/core``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refluxo._lazy import lazy_exports

if TYPE_CHECKING:
    from refluxo.context import Context, MemoryContext
    from refluxo.definitions import Executor, NodeDefinition
    from refluxo.engine import WorkflowEngine
    from refluxo.errors import (
        ExpressionError,
        LimitExceededError,
        NodeValidationError,
        RefluxoError,
        TransientError,
        WorkflowDefinitionError,
    )
    from refluxo.frozen import thaw
    from refluxo.model import (
        Edge,
        Node,
        NodeResult,
        RetryPolicy,
        RetryState,
        Snapshot,
        SnapshotStatus,
        SnapshotTooDeep,
        StepResult,
        WorkflowDefinition,
    )
    from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext
    from refluxo.redaction import RedactionPlugin
    from refluxo.retry import DefaultErrorHandler, ErrorHandler
    from refluxo.snapshot_json import InvalidResult
    from refluxo.transform import TransformEngine
    from refluxo.validation import SchemaValidator, ValidationIssue, ValidationResult, Validator

_EXPORTS: dict[str, str] = {
    "Context": "refluxo.context",
    "DefaultErrorHandler": "refluxo.retry",
    "Edge": "refluxo.model",
    "ErrorHandler": "refluxo.retry",
    "ErrorPluginContext": "refluxo.plugins",
    "Executor": "refluxo.definitions",
    "ExpressionError": "refluxo.errors",
    "LimitExceededError": "refluxo.errors",
    "InvalidResult": "refluxo.snapshot_json",
    "MemoryContext": "refluxo.context",
    "Node": "refluxo.model",
    "NodeDefinition": "refluxo.definitions",
    "NodeResult": "refluxo.model",
    "NodeValidationError": "refluxo.errors",
    "Plugin": "refluxo.plugins",
    "PluginContext": "refluxo.plugins",
    "RedactionPlugin": "refluxo.redaction",
    "RefluxoError": "refluxo.errors",
    "RetryPolicy": "refluxo.model",
    "RetryState": "refluxo.model",
    "SchemaValidator": "refluxo.validation",
    "Snapshot": "refluxo.model",
    "SnapshotStatus": "refluxo.model",
    "SnapshotTooDeep": "refluxo.model",
    "StepResult": "refluxo.model",
    "TransformEngine": "refluxo.transform",
    "TransientError": "refluxo.errors",
    "ValidationIssue": "refluxo.validation",
    "ValidationResult": "refluxo.validation",
    "Validator": "refluxo.validation",
    "WorkflowDefinition": "refluxo.model",
    "WorkflowDefinitionError": "refluxo.errors",
    "WorkflowEngine": "refluxo.engine",
    "thaw": "refluxo.frozen",
}
"""Each exported name to the module defining it, imported on first use (PEP 562): the
``refluxo`` command starts without loading the engine it does not need."""

__version__ = "0.1.0"

__all__ = [
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


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
