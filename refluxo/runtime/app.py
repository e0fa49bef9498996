"""The application object: node types, named workflows, and their stored versions.

Users register node types with a decorator and workflows by name. When a run starts, its
workflow is stored under the hash of its content, and the run records that hash: a run
keeps executing the graph it started with even after the workflow is edited. (Node types
are code, deployed with the application; they are not versioned.)
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from refluxo.branches import declared_handles, did_you_mean, nearest
from refluxo.definitions import Executor, NodeDefinition
from refluxo.engine import WorkflowEngine
from refluxo.errors import WorkflowDefinitionError
from refluxo.expressions import JexlTransformEngine
from refluxo.graph import check_graph, raise_for_errors
from refluxo.model import RetryPolicy, WorkflowDefinition, default_start
from refluxo.plugins import Plugin
from refluxo.redaction import RedactionPlugin, Redactor
from refluxo.retry import ErrorHandler
from refluxo.runtime.builtins import BUILTIN_NODE_TYPES
from refluxo.runtime.errors import UnknownWorkflow
from refluxo.runtime.fanout import child_node_types, child_run_problems
from refluxo.runtime.limits import RuntimeLimits
from refluxo.steps import Clock, wall_clock_ms
from refluxo.transform import TransformEngine
from refluxo.validation import SchemaValidator, Validator
from refluxo.workflow_check import WorkflowTextError, read_workflow_json, workflow_text

KNOWN_SHOWN = 20
"""Registered workflow names an unknown workflow's error lists (an app may have many)."""

F = TypeVar("F", bound=Callable[..., Any])

GlobalsProvider = Callable[[], Mapping[str, Any]]
"""Returns the globals (secrets, clients) for one delivery; never persisted."""


def definition_version(wire: Mapping[str, Any]) -> str:
    """The content hash identifying a workflow version: sha256 of its canonical JSON.

    Raises:
        WorkflowDefinitionError: the workflow holds what JSON cannot (``NaN``, an
            infinity) or UTF-8 cannot (a lone UTF-16 surrogate): no store could keep it.
    """
    try:
        canonical = json.dumps(
            wire, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
    except ValueError as err:  # NaN, an infinity; UnicodeEncodeError is a ValueError too
        reason = (
            f"a lone UTF-16 surrogate ({err.object[err.start]!r})"
            if isinstance(err, UnicodeEncodeError)
            else "NaN or an infinity, which JSON has no number for"
        )
        raise WorkflowDefinitionError(f"the workflow holds {reason}") from None


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A registered workflow: its graph, start node, and content version."""

    name: str
    definition: WorkflowDefinition
    start: str
    version: str
    wire: dict[str, Any] = field(repr=False, compare=False)
    """The stored form: the wire-shape graph plus its start node, as hashed into
    :attr:`version` at registration (built once: every start hands it to the store)."""


def _stored_as(wire: dict[str, Any]) -> Callable[[str], Mapping[str, Any]]:
    """A definition loader that answers ``wire`` (the registered form) without a store."""
    return lambda _version: wire


def choose_start(definition: WorkflowDefinition, start: str | None) -> str:
    """The explicit start, else the only node without incoming edges, else the first node."""
    ids = [node.id for node in definition.nodes]
    if not ids:
        raise WorkflowDefinitionError("a workflow needs at least one node")
    if start is not None:
        if start not in ids:
            raise WorkflowDefinitionError(f"start node {start!r} is not a node of the workflow")
        return start
    return default_start(ids, {edge.target for edge in definition.edges})


def with_handles(metadata: Any, handles: Sequence[str]) -> dict[str, Any]:
    """``metadata`` with ``"handles"`` set, for ``@app.node(handles=...)``."""
    if isinstance(handles, str):
        raise WorkflowDefinitionError(
            f"handles must be a list of strings, got the string {handles!r}"
        )
    if metadata is None:
        return {"handles": list(handles)}
    if not isinstance(metadata, Mapping):
        raise WorkflowDefinitionError(
            f"handles= needs metadata to be a dict, got {type(metadata).__name__}"
        )
    return {**metadata, "handles": list(handles)}


def load_workflow_file(path: str | Path) -> dict[str, Any]:
    """Read a workflow JSON file, with a clear error naming the file and line on failure."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as err:
        raise WorkflowDefinitionError(f"workflow file not found: {file}") from err
    try:
        loaded = read_workflow_json(workflow_text(raw))
    except WorkflowTextError as err:
        raise WorkflowDefinitionError(f"{file}:{err.line}: {err.message}") from None
    if not isinstance(loaded, dict):
        raise WorkflowDefinitionError(f"{file}: a workflow is a JSON object with nodes and edges")
    return loaded


class App:
    """Node types and workflows, plus the engine options every run of this app uses.

    Args:
        globals: a mapping, or a callable returning one per delivery, passed to transforms,
            executors and plugins as ``globals``. Never stored: the place for secrets. Their
            values are masked in everything the app records (outputs, error texts) by a
            ``RedactionPlugin(keys=(), mask_globals=True)`` added to ``plugins``, unless
            ``plugins`` holds a :class:`RedactionPlugin` already (one with
            ``mask_globals=False`` records them as they are).
        transform_engines: defaults to ``[JexlTransformEngine()]`` (``{{ }}`` expressions).
        validator: defaults to :class:`SchemaValidator`.
        error_handler, plugins, clock: as for :class:`WorkflowEngine`.
        limits: sizes and counts the runtime enforces (:class:`RuntimeLimits`).
    """

    def __init__(
        self,
        *,
        globals: Mapping[str, Any] | GlobalsProvider | None = None,
        transform_engines: Sequence[TransformEngine] | None = None,
        validator: Validator | None = None,
        error_handler: ErrorHandler | None = None,
        plugins: Sequence[Plugin] = (),
        clock: Clock = wall_clock_ms,
        limits: RuntimeLimits | None = None,
        engine_cache_size: int = 64,
    ) -> None:
        self._globals = globals
        self.transform_engines = (
            list(transform_engines) if transform_engines is not None else [JexlTransformEngine()]
        )
        self.validator = validator if validator is not None else SchemaValidator()
        self.error_handler = error_handler
        self.plugins = list(plugins)
        if globals is not None and not any(isinstance(p, RedactionPlugin) for p in plugins):
            # Globals are where secrets go: what the app records is masked of their values
            # (an output, an error text quoting one, an expression's error naming one) unless
            # the app brings its own RedactionPlugin (``mask_globals=False``: store them).
            self.plugins.append(RedactionPlugin(keys=(), mask_globals=True))
        self.clock = clock
        self.limits = limits or RuntimeLimits()
        self.node_types: dict[str, NodeDefinition] = dict(BUILTIN_NODE_TYPES)
        self.child_node_types: dict[str, NodeDefinition] = child_node_types(self)
        """``map``, ``parallel`` and ``call``: their pauses start child runs. A type of the
        same name registered by the app replaces them (and its pauses are plain ones)."""
        self.node_types.update(self.child_node_types)
        self.workflows: dict[str, WorkflowSpec] = {}
        self._engines: OrderedDict[str, WorkflowEngine] = OrderedDict()
        self._engine_cache_size = engine_cache_size

    def node(
        self,
        type_name: str | None = None,
        *,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        metadata: Any = None,
        handles: Sequence[str] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the executor of node type ``type_name``.

        The type defaults to the function's name. ``handles`` declares the handles the
        executor may return (stored as ``metadata["handles"]``): workflows whose edges
        carry another ``sourceHandle`` are refused, and returning another handle is a node
        error. Without it, any handle goes, as in ``@refluxo/core``.
        """
        if handles is not None:
            metadata = with_handles(metadata, handles)

        def register(executor: F) -> F:
            self.add_node_type(
                type_name or executor.__name__,
                NodeDefinition(executor, retry_policy=retry_policy, metadata=metadata),  # type: ignore[arg-type]
            )
            return executor

        return register

    def add_node_type(
        self, type_name: str, definition: NodeDefinition | Mapping[str, Any] | Executor
    ) -> None:
        """Register a node type from a definition, its dict form, or a bare executor.

        A definition declaring handles (``metadata["handles"]``) is held to them by the
        engine: returning an undeclared handle is a node error.
        """
        if callable(definition) and not isinstance(definition, NodeDefinition):
            definition = NodeDefinition(definition)
        definition = NodeDefinition.coerce(definition)
        declared_handles(definition.metadata)  # a malformed declaration is refused here
        self.node_types[type_name] = definition
        self._engines.clear()

    def workflow(
        self,
        name: str,
        definition: WorkflowDefinition | Mapping[str, Any] | str | Path,
        *,
        start: str | None = None,
    ) -> WorkflowSpec:
        """Register (or replace) the workflow ``name``.

        ``definition`` is a model, a wire-shape dict, or the path of a JSON file. A dict or
        file may name its start node under ``"start"``. A workflow with an error of
        :func:`~refluxo.graph.check_graph` (an unknown node type, a ``sourceHandle`` its
        node type does not declare, a ``nodes.<id>`` of no node...) is refused with a
        :class:`WorkflowDefinitionError` naming each.
        """
        if not isinstance(name, str) or not name.strip():
            raise WorkflowDefinitionError(f"a workflow needs a name, got {name!r}")
        if isinstance(definition, str | Path):
            definition = load_workflow_file(definition)
        if isinstance(definition, Mapping):
            start = start or definition.get("start")
            model = WorkflowDefinition.model_validate(
                {k: v for k, v in definition.items() if k != "start"}
            )
        else:
            model = definition
        self.limits.check_workflow(name, model)
        problems = check_graph(model, node_types=self.node_types, start=start)
        problems += child_run_problems(model, self, names=False)
        raise_for_errors(problems, f"workflow {name!r}")
        first = choose_start(model, start)
        wire = {**model.model_dump(mode="json"), "start": first}
        spec = WorkflowSpec(
            name=name, definition=model, start=first, version=definition_version(wire), wire=wire
        )
        self.workflows[name] = spec
        return spec

    def get_workflow(self, name: str) -> WorkflowSpec:
        spec = self.workflows.get(name)
        if spec is None:
            names = sorted(self.workflows)
            suggestion = nearest(name, names) if isinstance(name, str) else None
            shown = ", ".join(names[:KNOWN_SHOWN]) or "none"
            if len(names) > KNOWN_SHOWN:
                shown += f" and {len(names) - KNOWN_SHOWN} more"
            raise UnknownWorkflow(
                f"unknown workflow {name!r}{did_you_mean(suggestion)} (registered: {shown})"
            )
        return spec

    def starts_children(self, node_type: str) -> bool:
        """Whether a pause of a node of ``node_type`` asks for child runs."""
        built_in = self.child_node_types.get(node_type)
        return built_in is not None and self.node_types.get(node_type) is built_in

    def workflow_starts_children(self, name: str) -> bool:
        """Whether runs of the workflow registered as ``name`` may start child runs (it
        has a node that starts them); an unknown workflow starts none."""
        spec = self.workflows.get(name)
        return spec is not None and any(
            self.starts_children(node.type) for node in spec.definition.nodes
        )

    def globals(self) -> Mapping[str, Any] | None:
        """The globals for one delivery."""
        provider = self._globals
        return provider() if callable(provider) else provider

    def redactor(self, globals_: Any) -> Redactor | None:
        """What masks secrets in this app's commits: the first :class:`RedactionPlugin`
        that masks globals, for this delivery's globals; None without one."""
        for plugin in self.plugins:
            if isinstance(plugin, RedactionPlugin) and plugin.mask_globals:
                return plugin.redactor(globals_)
        return None

    def warm_engines(self) -> None:
        """Build the engines of the registered workflows now, for a process about to
        deliver steps: a run's first step then does not wait for its graph to be checked
        and indexed (a few milliseconds per thousand nodes)."""
        for spec in list(self.workflows.values())[-self._engine_cache_size :]:
            self.engine_for(spec.version, _stored_as(spec.wire))

    def cached_engine(self, version: str) -> WorkflowEngine | None:
        """The engine of a definition version if it is built already (no store read)."""
        engine = self._engines.get(version)
        if engine is not None:
            self._engines.move_to_end(version)
        return engine

    def engine_for(self, version: str, load: Callable[[str], Mapping[str, Any]]) -> WorkflowEngine:
        """The engine for a stored definition version, built once and cached (bounded).

        A version is a content hash, so a cached engine never goes stale; ``load`` reads
        the stored definition only on a cache miss.
        """
        engine = self._engines.get(version)
        if engine is not None:
            self._engines.move_to_end(version)
            return engine
        stored = load(version)
        graph = {k: v for k, v in stored.items() if k != "start"}
        engine = WorkflowEngine(
            graph,
            self.node_types,
            validator=self.validator,
            transform_engines=self.transform_engines,
            error_handler=self.error_handler,
            plugins=self.plugins,
            clock=self.clock,
            offload_sync=True,
        )
        self._engines[version] = engine
        if len(self._engines) > self._engine_cache_size:
            self._engines.popitem(last=False)
        return engine
