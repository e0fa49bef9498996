"""The workflow engine: a pure function from (snapshot, payload) to the next snapshot.

The engine performs no I/O of its own (executors do), keeps no state between calls, and
never mutates a snapshot it is given. Each call to :meth:`WorkflowEngine.execute_step`
runs one node and returns one transition, with ``version`` incremented: that version is
the optimistic-lock token a durable store compares before committing.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from refluxo._aio import resolve
from refluxo.context import EMPTY_CONTEXT
from refluxo.definitions import NodeDefinition, as_step_result
from refluxo.errors import NodeValidationError, WorkflowDefinitionError
from refluxo.frozen import freeze, thaw
from refluxo.model import (
    Node,
    NodeResult,
    RetryState,
    Snapshot,
    SnapshotStatus,
    WorkflowDefinition,
    trusted,
)
from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext, PluginHooks
from refluxo.retry import DefaultErrorHandler, ErrorHandler
from refluxo.transform import TransformEngine
from refluxo.validation import ValidationResult, Validator

logger = logging.getLogger("refluxo.engine")

Clock = Callable[[], int]
"""Returns the current time in epoch milliseconds."""

MAX_RETRY_DELAY_MS = 10 * 365 * 24 * 3600 * 1000
"""Retry delays are capped at ten years, so exponential backoff cannot overflow."""

STEP_LIMIT_REASON = "Step limit exceeded"


def _evolve(snapshot: Snapshot, changes: dict[str, Any]) -> Snapshot:
    """A copy of ``snapshot`` with ``changes`` applied, without re-validation.

    Equivalent to ``snapshot.model_copy(update=changes)`` (the engine only writes values of
    the right types), at half the cost: this runs on every step.
    """
    fields = snapshot.__dict__.copy()
    fields.update(changes)
    return trusted(Snapshot, fields)


def wall_clock_ms() -> int:
    """The real clock: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def describe_error(error: BaseException) -> str:
    """The error text stored in a node result: ``"TypeName: message"``."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class WorkflowEngine:
    """Executes a workflow one node at a time over serializable snapshots.

    Args:
        workflow: a :class:`WorkflowDefinition`, or a dict in the wire shape
            ``{"nodes": [...], "edges": [...]}``.
        node_definitions: node type name to :class:`NodeDefinition` (or its dict form).
        validator: checks each node's input and output against its definition's metadata.
        transform_engines: rewrite node input in order (expressions, secrets...).
        error_handler: decides retries; :class:`DefaultErrorHandler` by default.
        plugins: lifecycle hooks; their failures are logged and ignored.
        clock: the time source in epoch milliseconds; replace it to control time in tests.
    """

    def __init__(
        self,
        workflow: WorkflowDefinition | Mapping[str, Any],
        node_definitions: Mapping[str, NodeDefinition | Mapping[str, Any]],
        *,
        validator: Validator | None = None,
        transform_engines: Sequence[TransformEngine] | None = None,
        error_handler: ErrorHandler | None = None,
        plugins: Sequence[Plugin] | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.workflow = (
            workflow
            if isinstance(workflow, WorkflowDefinition)
            else WorkflowDefinition.model_validate(workflow)
        )
        self.node_definitions: dict[str, NodeDefinition] = {
            name: NodeDefinition.coerce(definition) for name, definition in node_definitions.items()
        }
        self.validator = validator
        self.transform_engines: list[TransformEngine] = list(transform_engines or [])
        self.error_handler: ErrorHandler = error_handler or DefaultErrorHandler()
        self.plugins: list[Plugin] = list(plugins or [])
        self._hooks = PluginHooks(self.plugins)
        self._clock = clock
        self._nodes: dict[str, Node] = {node.id: node for node in self.workflow.nodes}
        self._frozen_data: dict[str, Any] = {
            node.id: freeze(node.data) for node in self.workflow.nodes
        }
        # (source, handle) -> target; the first matching edge wins, as in Refluxo.
        self._next: dict[tuple[str, str | None], str] = {}
        for edge in self.workflow.edges:
            self._next.setdefault((edge.source, edge.source_handle), edge.target)

    def validate_workflow(self) -> None:
        """Raise :class:`WorkflowDefinitionError` naming a node type without a definition.

        Also rejects edges whose source or target is not a node.
        """
        for node in self.workflow.nodes:
            if node.type not in self.node_definitions:
                raise WorkflowDefinitionError(
                    f"Node definition not found for type: {node.type} (node {node.id!r})"
                )
        for edge in self.workflow.edges:
            for end in (edge.source, edge.target):
                if end not in self._nodes:
                    raise WorkflowDefinitionError(
                        f"edge {edge.source!r} -> {edge.target!r} refers to unknown node {end!r}"
                    )

    def create_initial_snapshot(self, workflow_id: str, start_node_id: str) -> Snapshot:
        """A new run positioned on ``start_node_id``: active, version 0, empty context."""
        return Snapshot(
            workflow_id=workflow_id,
            status=SnapshotStatus.ACTIVE,
            current_node_id=start_node_id,
            context=EMPTY_CONTEXT,
            version=0,
            metadata={},
            last_started_at=self._clock(),
            total_execution_time=0,
        )

    async def execute(
        self,
        *,
        snapshot: Snapshot | None = None,
        initial_node_id: str | None = None,
        workflow_id: str | None = None,
        external_payload: Any = None,
        step_limit: int = 100,
        globals: Any = None,
    ) -> Snapshot:
        """Run until the workflow completes, pauses, fails, or waits for a retry.

        Give exactly one of ``snapshot`` (resume: paused and error runs become active again;
        completed and failed runs come back unchanged) or ``initial_node_id`` (start a new
        run, with ``workflow_id`` or ``"default"``). ``external_payload`` reaches the first
        step only. Past ``step_limit`` steps the run fails with
        ``metadata["failedReason"] == "Step limit exceeded"``.
        """
        if (snapshot is None) == (initial_node_id is None):
            raise ValueError("give exactly one of snapshot or initial_node_id")
        if snapshot is None:
            assert initial_node_id is not None
            current = self.create_initial_snapshot(workflow_id or "default", initial_node_id)
            await self._hooks.call("on_workflow_start", current)
        else:
            resumable = snapshot.status in (SnapshotStatus.PAUSED, SnapshotStatus.ERROR)
            current = _evolve(
                snapshot,
                {
                    "status": SnapshotStatus.ACTIVE if resumable else snapshot.status,
                    "last_started_at": self._clock(),
                },
            )

        steps = 0
        while current.status == SnapshotStatus.ACTIVE:
            if steps >= step_limit:
                return _evolve(
                    current,
                    {
                        "status": SnapshotStatus.FAILED,
                        "version": current.version + 1,
                        "metadata": {**current.metadata, "failedReason": STEP_LIMIT_REASON},
                    },
                )
            payload = external_payload if steps == 0 else None
            current = await self.execute_step(current, payload, globals)
            steps += 1

        if current.status == SnapshotStatus.COMPLETED:
            await self._hooks.call("on_workflow_complete", current)
        elif current.status == SnapshotStatus.PAUSED:
            await self._hooks.call("on_workflow_pause", current)
        return current

    async def execute_step(
        self, snapshot: Snapshot, external_payload: Any = None, globals: Any = None
    ) -> Snapshot:
        """Execute the snapshot's current node once and return the next snapshot.

        Never mutates ``snapshot``. The result is a success (output appended, next node
        chosen by the returned handle, or completed when no edge matches), a pause, a retry
        scheduled (status ``"error"`` with ``retry_state``), or a failure. ``version`` is
        incremented in every case. Raises :class:`WorkflowDefinitionError` when the current
        node or its type is unknown.
        """
        now = self._clock()
        started = snapshot.last_started_at if snapshot.last_started_at is not None else now
        total = (snapshot.total_execution_time or 0) + (now - started)
        node_id = snapshot.current_node_id
        if node_id is None:
            return _evolve(
                snapshot,
                {
                    "status": SnapshotStatus.COMPLETED,
                    "version": snapshot.version + 1,
                    "last_started_at": now,
                    "total_execution_time": total,
                },
            )
        node = self._nodes.get(node_id)
        if node is None:
            raise WorkflowDefinitionError(f"Node not found: {node_id}")
        definition = self.node_definitions.get(node.type)
        if definition is None:
            raise WorkflowDefinitionError(
                f"Node definition not found for type: {node.type} (node {node.id!r})"
            )
        retry = snapshot.retry_state
        attempt = retry.attempts + 1 if retry is not None and retry.node_id == node.id else 1
        timing = {"last_started_at": now, "total_execution_time": total}

        try:
            result_input, result = await self._run_node(
                node, definition, snapshot, external_payload, globals
            )
        except Exception as error:
            return await self._handle_error(
                snapshot, node, definition, error, attempt, external_payload, globals, timing
            )

        metadata = snapshot.metadata
        if result.pause:
            if self._hooks.has("on_after_node_execution"):
                await self._hooks.call(
                    "on_after_node_execution",
                    PluginContext(
                        node, definition, snapshot, globals, external_payload, result_input, None
                    ),
                )
            if result.resume_at is not None:
                metadata = {**metadata, "resumeAt": int(result.resume_at)}
            elif "resumeAt" in metadata:
                metadata = {k: v for k, v in metadata.items() if k != "resumeAt"}
            return _evolve(
                snapshot,
                {
                    "status": SnapshotStatus.PAUSED,
                    "version": snapshot.version + 1,
                    "metadata": metadata,
                    **timing,
                },
            )

        if "resumeAt" in metadata:
            metadata = {k: v for k, v in metadata.items() if k != "resumeAt"}
        next_node_id = self._next.get((node.id, result.next_handle))
        entry = trusted(
            NodeResult,
            {"output": result.data, "timestamp": self._clock(), "error": None, "attempt": attempt},
        )
        return _evolve(
            snapshot,
            {
                "current_node_id": next_node_id,
                "context": snapshot.context.appended(node.id, entry),
                "status": SnapshotStatus.ACTIVE if next_node_id else SnapshotStatus.COMPLETED,
                "version": snapshot.version + 1,
                "retry_state": None,
                "metadata": metadata,
                **timing,
            },
        )

    async def _run_node(
        self,
        node: Node,
        definition: NodeDefinition,
        snapshot: Snapshot,
        external_payload: Any,
        globals: Any,
    ) -> tuple[Any, Any]:
        """Hooks, transforms, validation and the executor; any exception is a node error."""
        data = self._frozen_data[node.id]
        if self._hooks.has("on_before_node_execution"):
            await self._hooks.call(
                "on_before_node_execution",
                PluginContext(node, definition, snapshot, globals, external_payload, data),
            )
        if self.transform_engines:
            data = thaw(data)
            for engine in self.transform_engines:
                data = await resolve(engine.transform(data, snapshot.context, globals))
        if self.validator is not None and definition.metadata:
            checked: Any = await resolve(self.validator.validate(data, definition.metadata))
            _raise_if_invalid(checked, node, "input")
            if checked.data is not None:
                data = checked.data

        raw = definition.executor(data, snapshot.context, external_payload, globals)
        if inspect.isawaitable(raw):
            raw = await raw
        result = as_step_result(raw)
        if result.pause:
            return data, result

        if self.validator is not None and definition.metadata:
            checked_output: Any = await resolve(
                self.validator.validate_output(result.data, definition.metadata)
            )
            _raise_if_invalid(checked_output, node, "output")
            if checked_output.data is not None and checked_output.data is not result.data:
                result = dataclasses.replace(result, data=checked_output.data)
        if self._hooks.has("transform_output"):
            context = PluginContext(
                node, definition, snapshot, globals, external_payload, data, result.data
            )
            redacted = await self._hooks.transform("transform_output", context, result.data)
            result = dataclasses.replace(result, data=redacted)
        if self._hooks.has("on_after_node_execution"):
            await self._hooks.call(
                "on_after_node_execution",
                PluginContext(
                    node, definition, snapshot, globals, external_payload, data, result.data
                ),
            )
        return data, result

    async def _handle_error(
        self,
        snapshot: Snapshot,
        node: Node,
        definition: NodeDefinition,
        error: Exception,
        attempt: int,
        external_payload: Any,
        globals: Any,
        timing: dict[str, Any],
    ) -> Snapshot:
        error_context = ErrorPluginContext(
            node,
            definition,
            snapshot,
            globals,
            external_payload,
            self._frozen_data[node.id],
            None,
            error,
            attempt,
        )
        if self._hooks.has("on_node_error"):
            await self._hooks.call("on_node_error", error_context)
        text = describe_error(error)
        if self._hooks.has("transform_error"):
            try:
                text = str(await self._hooks.transform("transform_error", error_context, text))
            except Exception:
                logger.exception("transform_error failed on node %r; error text withheld", node.id)
                text = f"{type(error).__name__}: (message withheld: redaction failed)"
        retry = bool(
            await resolve(self.error_handler.should_retry(error, attempt, node, definition))
        )
        now = self._clock()
        entry = trusted(
            NodeResult,
            {"output": None, "timestamp": now, "error": text, "attempt": attempt},
        )
        context = snapshot.context.appended(node.id, entry)
        if retry:
            delay: Any = await resolve(
                self.error_handler.get_retry_delay(attempt, node, definition)
            )
            delay_ms = int(min(max(float(delay), 0.0), MAX_RETRY_DELAY_MS))
            return _evolve(
                snapshot,
                {
                    "status": SnapshotStatus.ERROR,
                    "version": snapshot.version + 1,
                    "retry_state": RetryState(node.id, attempt, now + delay_ms),
                    "context": context,
                    "metadata": {**snapshot.metadata, "pausedReason": f"Retry attempt {attempt}"},
                    **timing,
                },
            )
        return _evolve(
            snapshot,
            {
                "status": SnapshotStatus.FAILED,
                "version": snapshot.version + 1,
                "retry_state": None,
                "context": context,
                **timing,
            },
        )


def _raise_if_invalid(checked: Any, node: Node, what: str) -> None:
    if not isinstance(checked, ValidationResult):
        raise TypeError(f"a validator must return a ValidationResult, got {checked!r}")
    if not checked.valid:
        raise NodeValidationError(
            f"Validation failed for node '{node.id}' ({what}): "
            f"{json.dumps(checked.errors, default=str)}"
        )
