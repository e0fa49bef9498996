"""The workflow engine: a pure function from (snapshot, payload) to the next snapshot.

The engine performs no I/O of its own (executors do), keeps no state between calls, and
never mutates a snapshot it is given. Each call to :meth:`WorkflowEngine.execute_step`
runs one node and returns one transition, with ``version`` incremented: that version is
the optimistic-lock token a durable store compares before committing.

One module on purpose, though over 400 lines: the step (``execute_step``: hooks,
transforms, validation, the executor, the error handler) and the one loop that drives steps
(``drive``, used by ``execute`` and by the durable runtime's dispatcher) are a single
concept, the transition function, and splitting them would spread the ordering of hooks and
the numbering of attempts over several files. Its vocabulary (failing a snapshot, bounded
times, the step position) lives in :mod:`refluxo.steps`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from refluxo._aio import offload, resolve
from refluxo.branches import check_handle, declared_handles
from refluxo.context import EMPTY_CONTEXT
from refluxo.definitions import NodeDefinition, as_step_result
from refluxo.errors import (
    NodeValidationError,
    TransientError,
    WorkflowDefinitionError,
    ends_the_step,
    node_error_for,
    where_failed,
)
from refluxo.frozen import freeze, thaw, thaw_within
from refluxo.graph import check_graph, raise_for_errors
from refluxo.metadata import PAUSED_REASON, PAUSED_WITH, RESUME_AT, STEP_LIMIT_REASON
from refluxo.model import (
    ABSENT,
    Node,
    NodeResult,
    RetryState,
    Snapshot,
    SnapshotStatus,
    WorkflowDefinition,
    as_output,
    trusted,
)
from refluxo.plugins import ErrorPluginContext, Plugin, PluginContext, PluginHooks
from refluxo.retry import DefaultErrorHandler, ErrorHandler
from refluxo.steps import (
    REDACTION_WINDOW,
    Clock,
    StepPosition,
    checked_resume_at,
    current_position,
    cut_text,
    describe_error,
    evolve,
    fail,
    pause_data,
    retry_time,
    wall_clock_ms,
    without,
)
from refluxo.transform import TransformEngine
from refluxo.validation import ValidationResult, Validator

logger = logging.getLogger("refluxo.engine")

MAX_NODE_INPUT_SIZE: Final = 4_000_000
"""Characters and elements of a node's input once its templates are resolved, as copied for
its executor: a value the templates refer to N times counts N times (``[x, x, ...]`` of one
large output would otherwise be a few bytes of template and gigabytes of copy)."""


class Verdict(enum.Enum):
    """What a driver's ``admit`` callback says of a step it has just executed."""

    KEEP = "keep"
    """Keep the step and go on."""
    LAST = "last"
    """Keep the step and end the batch here (e.g. the batch is large enough to commit)."""


Admit = Callable[[Snapshot], "Verdict | str"]
"""Judges each new snapshot of a drive: a :class:`Verdict`, or a reason (a ``str``) that
the step cannot be kept, which fails the run at that step with that reason."""


@dataclass(frozen=True, slots=True)
class Advance:
    """What :meth:`WorkflowEngine.drive` did: the snapshot it ended on, and steps executed."""

    snapshot: Snapshot
    steps: int


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
        offload_sync: run ``def`` executors in a worker thread (``asyncio.to_thread``; in place
            when the step is driven in place, see :mod:`refluxo._aio`), so
            that a blocking executor does not hold up other runs sharing the event loop.
            The durable runtime turns it on; a bare engine runs them inline.
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
        offload_sync: bool = False,
    ) -> None:
        self.offload_sync = offload_sync
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
        self._node_views: dict[str, Node] = {}
        """Each node as hooks see it: its data and metadata read-only (built on first use)."""
        self._frozen_data: dict[str, Any] = {
            node.id: freeze(node.data) for node in self.workflow.nodes
        }
        # (source, handle) -> target; the first matching edge wins, as in Refluxo. An edge
        # with `sourceHandle: null` is never taken, as there: no handle is not null.
        self._next: dict[tuple[str, str | None], str] = {}
        for edge in self.workflow.edges:
            if not edge.null_handle:
                self._next.setdefault((edge.source, edge.source_handle), edge.target)
        # The handles each node type declares (metadata["handles"]): an executor returning
        # another one fails its node instead of ending the run by matching no edge.
        self._handles: dict[str, tuple[str, ...]] = {}
        for name, definition in self.node_definitions.items():
            handles = declared_handles(definition.metadata)
            if handles is not None:
                self._handles[name] = handles

    def node_type(self, node_id: str | None) -> str | None:
        """The type of node ``node_id``, or None if the workflow has no such node."""
        node = self._nodes.get(node_id) if node_id is not None else None
        return node.type if node is not None else None

    def validate_workflow(self) -> None:
        """Raise :class:`WorkflowDefinitionError` naming node types without a definition
        and edges whose source or target is not a node (see :mod:`refluxo.graph`)."""
        problems = check_graph(self.workflow, node_types=self.node_definitions, expressions=False)
        raise_for_errors(problems, "invalid workflow")

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
        else:
            current = self.resumed(snapshot)
        advance = await self.drive(
            current,
            external_payload=external_payload,
            globals=globals,
            step_limit=step_limit,
            started=snapshot is None,
        )
        return advance.snapshot

    def resumed(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` made active again to continue it (paused and error runs).

        Completed and failed runs come back unchanged; never mutates ``snapshot``.
        """
        resumable = snapshot.status in (SnapshotStatus.PAUSED, SnapshotStatus.ERROR)
        return evolve(
            snapshot,
            {
                "status": SnapshotStatus.ACTIVE if resumable else snapshot.status,
                "last_started_at": self._clock(),
            },
        )

    async def drive(
        self,
        snapshot: Snapshot,
        *,
        external_payload: Any = None,
        globals: Any = None,
        step_limit: int | None = None,
        max_steps: int | None = None,
        deadline: float | None = None,
        admit: Admit | None = None,
        started: bool = False,
        keep_progress: bool = False,
    ) -> Advance:
        """Execute steps while the run is active: the one step loop every caller uses.

        ``engine.execute`` and the durable runtime's dispatcher both drive runs through
        here, so attempts, the step limit, failing a snapshot and the workflow hooks are
        written once.

        Args:
            snapshot: an active snapshot (anything else is returned as is, with its hooks).
            external_payload: reaches the first step only.
            step_limit: fail the run (``failedReason = "Step limit exceeded"``) rather than
                execute a step past this many; ``None``: no limit.
            max_steps: stop after this many steps, leaving the run active (a budget).
            deadline: stop, leaving the run active, once ``time.monotonic()`` passes it.
            admit: judges each new snapshot; a reason fails the run at that step instead
                (its results are dropped, those of the steps before it kept).
            started: the run starts here: ``on_workflow_start`` fires first.
            keep_progress: an error that is not a node error, raised after steps were
                executed, ends the drive with those steps kept instead of propagating: a
                :class:`TransientError` returns the last good snapshot (to retry from
                there), anything else fails the run at the step that raised. For callers
                that must store what was executed (the durable runtime).

        Returns:
            The last snapshot and the number of steps executed. ``on_workflow_complete``
            and ``on_workflow_pause`` fire when it is completed or paused.

        Raises:
            TransientError: a backend failed for a reason that may pass (never turned into
                a node error).
            WorkflowDefinitionError: the current node or its type is unknown; and any
                other error that is not a node error (a failing error handler). With
                ``keep_progress``, only from the first step.
        """
        if started:
            await self._hooks.call("on_workflow_start", snapshot)
        current = snapshot
        steps = 0
        while current.status == SnapshotStatus.ACTIVE:
            if step_limit is not None and steps >= step_limit:
                current = fail(current, STEP_LIMIT_REASON)
                break
            if max_steps is not None and steps >= max_steps:
                break
            if steps and deadline is not None and time.monotonic() >= deadline:
                break
            try:
                after = await self.execute_step(
                    current, external_payload if steps == 0 else None, globals
                )
            except TransientError:
                if steps == 0 or not keep_progress:
                    raise
                break  # keep what was executed; the next delivery retries this step
            except Exception as err:
                # The graph cannot go on (an edge to a missing node, a node type the app no
                # longer has, a failing error handler).
                if steps == 0 or not keep_progress:
                    raise
                current = fail(current, describe_error(err))
                break
            steps += 1
            verdict = admit(after) if admit is not None else Verdict.KEEP
            if isinstance(verdict, str):
                current = fail(current, verdict)
                break
            current = after
            if verdict is Verdict.LAST:
                break
        if current.status == SnapshotStatus.COMPLETED:
            await self._hooks.call("on_workflow_complete", current)
        elif current.status == SnapshotStatus.PAUSED:
            await self._hooks.call("on_workflow_pause", current)
        return Advance(current, steps)

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
            return evolve(
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
        context = snapshot.context
        visit = (len(context[node.id]) if node.id in context else 0) - (attempt - 1)
        position = StepPosition(
            snapshot.workflow_id, node.id, snapshot.version, attempt, visit, now
        )

        token = current_position.set(position)
        try:
            result_input, result = await self._run_node(
                node, definition, snapshot, external_payload, globals
            )
            # What a plugin made of the output must be JSON too (the executor's own output
            # is converted before plugins see it, in _run_node).
            if not result.pause:
                held = as_output(result.data)
            elif result.data is not ABSENT and result.data is not None:
                held = pause_data(result.data)
            else:
                held = result.data
            if held is not result.data:
                result = dataclasses.replace(result, data=held)
            resume_at = (
                checked_resume_at(result.resume_at, now)
                if result.pause and result.resume_at is not None
                else None
            )
        except TransientError:
            raise
        except Exception as error:
            return await self._handle_error(
                snapshot, node, definition, error, attempt, external_payload, globals, timing
            )
        except BaseException as raised:
            # sys.exit() in a node's code (or a library's), a CancelledError of a task it
            # awaited, any other BaseException: the node fails. None of them may end the
            # thread or the event loop the step runs on, and with them every other run.
            # Only a cancellation of the step itself goes on up, and Ctrl-C.
            if ends_the_step(raised):
                raise
            return await self._handle_error(
                snapshot,
                node,
                definition,
                node_error_for(raised),
                attempt,
                external_payload,
                globals,
                timing,
            )
        finally:
            current_position.reset(token)

        metadata = without(snapshot.metadata, PAUSED_REASON, PAUSED_WITH)
        if result.pause:
            if self._hooks.has("on_after_node_execution"):
                await self._hooks.call(
                    "on_after_node_execution",
                    self._observed(
                        node, definition, snapshot, globals, external_payload, result_input
                    ),
                )
            if resume_at is not None:
                metadata = {**metadata, RESUME_AT: resume_at}
            else:
                metadata = without(metadata, RESUME_AT)
            if result.data is not ABSENT and result.data is not None:
                metadata = {**metadata, PAUSED_WITH: result.data}
            return evolve(
                snapshot,
                {
                    "status": SnapshotStatus.PAUSED,
                    "version": snapshot.version + 1,
                    "metadata": metadata,
                    **timing,
                },
            )

        metadata = without(metadata, RESUME_AT)
        next_node_id = self._next.get((node.id, result.next_handle))
        entry = trusted(
            NodeResult,
            {"output": result.data, "timestamp": self._clock(), "error": None, "attempt": attempt},
        )
        return evolve(
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

    async def record_failure(
        self, snapshot: Snapshot, error: Exception, globals: Any = None
    ) -> Snapshot:
        """The current node's attempt failed without an answer: ``error`` stands for it.

        For a runtime that knows an attempt ran but never finished (the platform timed it
        out or the process died, again and again): the node's error handler decides, as if
        the executor had raised ``error`` (a retry at its time, or a failure with the
        reason). Never mutates ``snapshot``.
        """
        now = self._clock()
        started = snapshot.last_started_at if snapshot.last_started_at is not None else now
        timing = {
            "last_started_at": now,
            "total_execution_time": (snapshot.total_execution_time or 0) + (now - started),
        }
        node_id = snapshot.current_node_id
        node = self._nodes.get(node_id) if node_id is not None else None
        if node is None:
            raise WorkflowDefinitionError(f"Node not found: {node_id}")
        definition = self.node_definitions.get(node.type)
        if definition is None:
            raise WorkflowDefinitionError(
                f"Node definition not found for type: {node.type} (node {node.id!r})"
            )
        retry = snapshot.retry_state
        attempt = retry.attempts + 1 if retry is not None and retry.node_id == node.id else 1
        return await self._handle_error(
            snapshot, node, definition, error, attempt, None, globals, timing
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
                self._observed(node, definition, snapshot, globals, external_payload, data),
            )
        if self.transform_engines:
            data = thaw(data)
            for engine in self.transform_engines:
                data = await resolve(engine.transform(data, snapshot.context, globals))
            # What expressions took from the history: a copy of its own, bounded (a template
            # may refer to one large output many times).
            data = thaw_within(data, MAX_NODE_INPUT_SIZE, f"the input of node {node.id!r}")
        if self.validator is not None and definition.metadata:
            checked: Any = await resolve(self.validator.validate(data, definition.metadata))
            _raise_if_invalid(checked, node, "input")
            if checked.data is not None:
                data = checked.data

        executor = definition.executor
        if self.offload_sync and not inspect.iscoroutinefunction(executor):
            raw = await offload(executor, data, snapshot.context, external_payload, globals)
        else:
            raw = executor(data, snapshot.context, external_payload, globals)
        raw = await resolve(raw)
        result = as_step_result(raw)
        handles = self._handles.get(node.type)
        if handles is not None and result.next_handle is not None:
            check_handle(node.type, result.next_handle, handles)
        if result.pause:
            if result.data is not ABSENT and self._hooks.has("transform_output"):
                # What a node pauses with is stored (metadata["pausedWith"]): the redaction
                # plugin masks it as it masks an output, once it is known to be JSON.
                if result.data is not None:
                    result = dataclasses.replace(result, data=pause_data(result.data))
                context = PluginContext(
                    node, definition, snapshot, globals, external_payload, data, result.data
                )
                redacted = await self._hooks.transform("transform_output", context, result.data)
                if redacted is not result.data:
                    result = dataclasses.replace(result, data=redacted)
            return data, result

        # Hooks and validators read a left-out output as None; it stays left out unless
        # one of them replaces it.
        output = None if result.data is ABSENT else result.data
        if self.validator is not None and definition.metadata:
            checked_output: Any = await resolve(
                self.validator.validate_output(output, definition.metadata)
            )
            _raise_if_invalid(checked_output, node, "output")
            if checked_output.data is not None and checked_output.data is not output:
                output = checked_output.data
                result = dataclasses.replace(result, data=output)
        if self._hooks.has("transform_output"):
            # What the executor returned, in its JSON form before a plugin sees it (a
            # redaction would store an object as its repr).
            if output is not None and (held := as_output(output)) is not output:
                output = held
                result = dataclasses.replace(result, data=output)
            context = PluginContext(
                node, definition, snapshot, globals, external_payload, data, output
            )
            redacted = await self._hooks.transform("transform_output", context, output)
            if redacted is not output:
                output = redacted
                result = dataclasses.replace(result, data=output)
        if self._hooks.has("on_after_node_execution"):
            await self._hooks.call(
                "on_after_node_execution",
                self._observed(node, definition, snapshot, globals, external_payload, data, output),
            )
        return data, result

    def _observed(
        self,
        node: Node,
        definition: NodeDefinition,
        snapshot: Snapshot,
        globals: Any,
        external_payload: Any,
        input: Any,
        output: Any = None,
    ) -> PluginContext:
        """What an observing hook sees: read-only views of the node (its data is the
        workflow's), the snapshot's metadata (``execute_step`` never changes its argument)
        and the output (already redacted: a hook must not add to what is recorded)."""
        return PluginContext(
            self._read_only_node(node),
            definition,
            _read_only_metadata(snapshot),
            globals,
            external_payload,
            input,
            freeze(output),
        )

    def _read_only_node(self, node: Node) -> Node:
        view = self._node_views.get(node.id)
        if view is None:
            view = node.model_copy(
                update={"data": self._frozen_data[node.id], "metadata": freeze(node.metadata)}
            )
            self._node_views[node.id] = view
        return view

    async def _masked(self, context: ErrorPluginContext, text: str, error: BaseException) -> str:
        """``text`` (about ``error``) as it may be stored: through the plugins'
        ``transform_error`` (redaction), or withheld if that fails, then cut to
        :data:`MAX_ERROR_TEXT`. Every error text a failure stores passes here: the node's,
        its error handler's, a bad retry delay's."""
        if not self._hooks.has("transform_error"):
            return cut_text(text)
        try:
            window = text[:REDACTION_WINDOW]  # a secret across this cut goes with the next
            masked = await self._hooks.transform("transform_error", context, window)
            if not isinstance(masked, str):  # None would read as no error at all
                logger.error(
                    "transform_error on node %r returned %s, not text; error text withheld",
                    context.node.id,
                    type(masked).__name__,
                )
                return f"{type(error).__name__}: (message withheld: redaction returned no text)"
            return cut_text(masked, total=len(text) if window is not text else None)
        except TransientError:
            raise
        except BaseException as err:
            if ends_the_step(err):
                raise
            logger.error(
                "transform_error failed on node %r; error text withheld: %s",
                context.node.id,
                where_failed(err),
            )
            return f"{type(error).__name__}: (message withheld: redaction failed)"

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
            self._read_only_node(node),
            definition,
            _read_only_metadata(snapshot),
            globals,
            external_payload,
            self._frozen_data[node.id],
            None,
            error,
            attempt,
        )
        if self._hooks.has("on_node_error"):
            await self._hooks.call("on_node_error", error_context)
        text = await self._masked(error_context, describe_error(error, None), error)
        reason: str | None = None
        delay: Any = 0
        try:
            retry = bool(
                await resolve(self.error_handler.should_retry(error, attempt, node, definition))
            )
            if retry:
                delay = await resolve(self.error_handler.get_retry_delay(attempt, node, definition))
        except TransientError:
            raise
        except BaseException as err:  # an error handler's failure fails the node, whatever
            if ends_the_step(err):
                raise
            retry = False
            raised = await self._masked(error_context, describe_error(err, None), err)
            reason = f"node {node.id!r} failed: {text} (and its error handler raised {raised})"
        now = self._clock()
        next_retry_at: int | float = now
        if retry:
            try:
                next_retry_at = retry_time(now, delay, f"the retry delay of node {node.id!r}")
            except (TypeError, ValueError) as err:
                retry, reason = False, f"{await self._masked(error_context, str(err), err)}; {text}"
        entry = trusted(
            NodeResult,
            {"output": None, "timestamp": now, "error": text, "attempt": attempt},
        )
        after = evolve(snapshot, {"context": snapshot.context.appended(node.id, entry), **timing})
        if retry:
            return evolve(
                after,
                {
                    "status": SnapshotStatus.ERROR,
                    "version": snapshot.version + 1,
                    "retry_state": RetryState(node.id, attempt, next_retry_at),
                    "metadata": {
                        **without(snapshot.metadata, RESUME_AT, PAUSED_WITH),
                        PAUSED_REASON: f"Retry attempt {attempt}",
                    },
                },
            )
        attempts = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        return fail(after, reason or f"node {node.id!r} failed after {attempts}: {text}")


def _raise_if_invalid(checked: Any, node: Node, what: str) -> None:
    if not isinstance(checked, ValidationResult):
        raise TypeError(f"a validator must return a ValidationResult, got {checked!r}")
    if not checked.valid:
        # @refluxo/core's text for input (`JSON.stringify`: compact, non-ASCII as is);
        # output validation, which it lacks, says so.
        where = "" if what == "input" else f" ({what})"
        errors = json.dumps(checked.errors, default=str, separators=(",", ":"), ensure_ascii=False)
        raise NodeValidationError(f"Validation failed for node '{node.id}'{where}: {errors}")


def _read_only_metadata(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with its metadata read-only, for a hook to see."""
    return evolve(snapshot, {"metadata": freeze(snapshot.metadata)})
