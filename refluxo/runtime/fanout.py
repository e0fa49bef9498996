"""Node types that run work in parallel as child runs: ``map``, ``parallel`` and ``call``.

The engine keeps one cursor per run and its snapshots stay those of ``@refluxo/core``, so
parallelism belongs to the runtime: such a node pauses its run with a request for child
runs (each an ordinary run of a registered workflow), the runtime starts them, and once
they have ended it resumes the node with their outcome, which the node turns into its
output. See :mod:`refluxo.runtime.children` for how children are started and joined.

* ``map``: ``{"items": [...], "workflow": "name", "concurrency": 10, "failure":
  "fail_fast"}``: one child per item (the item is its input), at most ``concurrency``
  running at once; the output lists the children's outputs in item order.
* ``parallel``: ``{"branches": {"a": "wf_a", "b": {"workflow": "wf_b", "input": ...}},
  "input": ...}``: every branch at once; the output maps each branch name to its output.
* ``call``: ``{"workflow": "name", "input": ...}``: one child (a sub-workflow); its output
  is the node's output.

Failures: under ``"fail_fast"`` (the default) the first child to fail stops the others
(they are cancelled) and the node fails with that child's reason, so the node's retry
policy applies (a retry starts new children). Under ``"collect"`` every child runs to its
end and a failed child's place holds ``{"error": reason, "runId": id}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from refluxo.branches import did_you_mean, nearest
from refluxo.definitions import NodeDefinition
from refluxo.frozen import thaw
from refluxo.graph import GraphProblem
from refluxo.model import StepResult
from refluxo.runtime.errors import UnknownWorkflow
from refluxo.runtime.limits import json_size

if TYPE_CHECKING:
    from refluxo.model import Node as NodeModel
    from refluxo.model import WorkflowDefinition
    from refluxo.runtime.app import App

FAIL_FAST: Final = "fail_fast"
COLLECT: Final = "collect"
FAILURE_MODES: Final = (FAIL_FAST, COLLECT)

DEFAULT_CONCURRENCY: Final = 10
MAX_CONCURRENCY: Final = 1000
MAX_BRANCHES: Final = 100


class ChildRunFailed(Exception):
    """A child run failed and its parent's node fails with it (``fail_fast``, ``call``)."""


@dataclass(frozen=True, slots=True)
class ChildrenOutcome:
    """How a node's child runs ended, handed to the node when they are joined.

    ``outputs[i]`` is child ``i``'s output (``None`` if it failed or never ran);
    ``errors`` the failed ones, each ``{"index", "runId", "error"}``. Only the runtime
    builds it: a resume payload or a run's input (JSON) can never be one.
    """

    outputs: list[Any]
    errors: list[dict[str, Any]]

    @classmethod
    def from_json(cls, value: Any) -> ChildrenOutcome:
        return cls(list(value.get("outputs", [])), list(value.get("errors", [])))


def _failure_mode(data: Mapping[str, Any]) -> str:
    mode = data.get("failure")
    if mode is None:  # absent, or an expression that gave null: the default
        return FAIL_FAST
    if mode not in FAILURE_MODES:
        raise ValueError(f"failure must be {FAIL_FAST!r} or {COLLECT!r}, got {mode!r}")
    return str(mode)


def _concurrency(data: Mapping[str, Any], default: int) -> int:
    value = data.get("concurrency")
    if value is None:  # absent, or an expression that gave null: the default
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 3.0 is 3
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(
            f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, got {value!r}"
        )
    return value


def _items(items: Any, who: str = "map ") -> list[Any] | tuple[Any, ...]:
    """A map's ``items``, refused unless a list; ``who`` opens the message."""
    if not isinstance(items, list | tuple):
        raise ValueError(f"{who}needs 'items' as a list, got {type(items).__name__}")
    return items


def _branches(branches: Any, who: str = "parallel ") -> Mapping[str, Any]:
    """A parallel's ``branches``, refused unless 1 to :data:`MAX_BRANCHES` of them;
    ``who`` opens the message."""
    if not isinstance(branches, Mapping) or not branches:
        raise ValueError(f"{who}needs 'branches': an object of branch name to workflow")
    if len(branches) > MAX_BRANCHES:
        raise ValueError(f"{who}has {len(branches)} branches; the limit is {MAX_BRANCHES}")
    return branches


def _data(data: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{kind} needs its data as an object, got {type(data).__name__}")
    return data


def _failed_entry(error: Mapping[str, Any]) -> dict[str, Any]:
    return {"error": error.get("error"), "runId": error.get("runId")}


def _raise_first(outcome: ChildrenOutcome, what: str, labels: list[str] | None = None) -> None:
    """Fail the node with the first failed child (by index), named as ``what``."""
    if outcome.errors:
        first = min(outcome.errors, key=lambda entry: int(entry.get("index", 0)))
        index = int(first.get("index", 0))
        label = f" {labels[index]!r}" if labels is not None else f" {index}" if what else ""
        raise ChildRunFailed(
            f"{what or 'the called workflow'}{label} (run {first.get('runId')}) "
            f"failed: {first.get('error')}"
        )


KNOWN_KEYS: Final = {
    "map": frozenset({"items", "workflow", "concurrency", "failure"}),
    "parallel": frozenset({"branches", "input", "concurrency", "failure"}),
    "call": frozenset({"workflow", "input"}),
}
"""The data keys each node type reads; another key is most likely a typo."""


def _literal(value: Any) -> bool:
    """Whether ``value`` is written as is (not a ``{{ }}`` expression evaluated per run)."""
    return not (isinstance(value, str) and "{{" in value)


def child_run_problems(
    workflow: WorkflowDefinition, app: App, *, names: bool
) -> list[GraphProblem]:
    """What makes a ``map``, ``parallel`` or ``call`` node of ``workflow`` fail in every run
    that reaches it, read from its data as written (values that are expressions are
    checked when they are evaluated): a bad ``concurrency`` or ``failure``, ``items``
    that is not a list, ``branches`` that is not a non-empty object of at most
    :data:`MAX_BRANCHES`; and, as warnings, keys the node type does not read.

    ``names``: also refuse a workflow name the app has not registered (``refluxo
    validate``, which loads the whole app). Registration cannot: a workflow may name one
    registered after it.
    """
    problems: list[GraphProblem] = []
    for index, node in enumerate(workflow.nodes):
        if app.starts_children(node.type):
            problems += _node_problems(node, index, app, names)
    return problems


def _node_problems(node: NodeModel, index: int, app: App, names: bool) -> list[GraphProblem]:
    problems: list[GraphProblem] = []
    where = f"{node.type} node {node.id!r}"

    def error(message: str, value: str | None = None, suggestion: str | None = None) -> None:
        problems.append(
            GraphProblem("error", f"{where}: {message}", index, value=value, suggestion=suggestion)
        )

    def workflow_name(value: Any, what: str) -> None:
        if not _literal(value):
            return
        if not isinstance(value, str):
            error(f"{what} must name a registered workflow, got {value!r}")
        elif names and value not in app.workflows:
            suggestion = nearest(value, app.workflows)
            error(
                f"{what} names no registered workflow: {value!r}{did_you_mean(suggestion)}",
                value,
                suggestion,
            )

    data = node.data
    if not isinstance(data, Mapping):
        if _literal(data):
            error(f"needs its data as an object, got {type(data).__name__}")
        return problems
    known = KNOWN_KEYS[node.type]
    for key in data:
        if key not in known:
            message = f"{where}: {key!r} is not read (it reads {', '.join(sorted(known))})"
            problems.append(GraphProblem("warning", message, index, value=str(key)))
    if node.type != "call":  # a call runs one child, and fails fast
        for key, check in (
            ("failure", _failure_mode),
            ("concurrency", lambda spec: _concurrency(spec, DEFAULT_CONCURRENCY)),
        ):
            try:
                if _literal(data.get(key)):
                    check(data)
            except ValueError as err:
                error(str(err))
    if node.type in ("map", "call"):
        workflow_name(data.get("workflow"), f"{node.type}'s 'workflow'")
    items = data.get("items")
    if node.type == "map" and items is None:
        error("needs 'items', the list to map over")
    elif node.type == "map" and _literal(items):
        try:
            _items(items, who="")
        except ValueError as err:
            error(str(err))
    if node.type == "parallel" and _literal(data.get("branches")):
        try:
            branches = _branches(data.get("branches"), who="")
        except ValueError as err:
            error(str(err))
            return problems
        for name, branch in branches.items():
            what = f"branch {name!r}"
            if isinstance(branch, Mapping):
                workflow_name(branch.get("workflow"), f"{what}'s 'workflow'")
            else:
                workflow_name(branch, what)
    return problems


def child_node_types(app: App) -> dict[str, NodeDefinition]:
    """The three node types, bound to ``app`` (which checks workflow names and limits)."""

    def checked_inputs(inputs: list[Any], what: str) -> list[Any]:
        size = json_size(inputs)
        limit = app.limits.max_output_bytes
        if size > limit:
            raise ValueError(
                f"{what} are {size} bytes of JSON; the limit is {limit} (the output limit): "
                "map over ids and let each child read its data"
            )
        return inputs

    def workflow_name(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must name a registered workflow, got {value!r}")
        try:
            app.get_workflow(value)
        except UnknownWorkflow as err:
            raise ValueError(str(err)) from None
        return value

    def map_node(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        spec = _data(data, "map")
        failure = _failure_mode(spec)
        if isinstance(payload, ChildrenOutcome):
            if failure == FAIL_FAST:
                _raise_first(payload, "item")
                return StepResult(payload.outputs)
            outputs = list(payload.outputs)
            for error in payload.errors:
                outputs[int(error["index"])] = _failed_entry(error)
            return StepResult(outputs)
        items = _items(spec.get("items"))
        limit = app.limits.max_children
        if len(items) > limit:
            raise ValueError(f"map has {len(items)} items; the limit is {limit} child runs")
        request = {
            "kind": "map",
            "workflow": workflow_name(spec.get("workflow"), "map's 'workflow'"),
            "inputs": checked_inputs(thaw(list(items)), "map's items"),
            "concurrency": _concurrency(spec, DEFAULT_CONCURRENCY),
            "failure": failure,
        }
        return StepResult(request, pause=True)

    def parallel_node(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        spec = _data(data, "parallel")
        failure = _failure_mode(spec)
        branches = _branches(spec.get("branches"))
        names = [str(name) for name in branches]
        if isinstance(payload, ChildrenOutcome):
            if failure == FAIL_FAST:
                _raise_first(payload, "branch", names)
            output = dict(zip(names, payload.outputs, strict=False))
            for error in payload.errors:
                output[names[int(error["index"])]] = _failed_entry(error)
            return StepResult(output)
        workflows: list[str] = []
        inputs: list[Any] = []
        for name, branch in branches.items():
            where = f"parallel branch {name!r}"
            if isinstance(branch, Mapping):
                workflows.append(workflow_name(branch.get("workflow"), f"{where}'s 'workflow'"))
                inputs.append(thaw(branch.get("input", spec.get("input"))))
            else:
                workflows.append(workflow_name(branch, where))
                inputs.append(thaw(spec.get("input")))
        request = {
            "kind": "parallel",
            "workflows": workflows,
            "names": names,
            "inputs": checked_inputs(inputs, "parallel's branch inputs"),
            "concurrency": _concurrency(spec, len(names)),
            "failure": failure,
        }
        return StepResult(request, pause=True)

    def call_node(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        spec = _data(data, "call")
        if isinstance(payload, ChildrenOutcome):
            _raise_first(payload, "")
            return StepResult(payload.outputs[0] if payload.outputs else None)
        request = {
            "kind": "call",
            "workflow": workflow_name(spec.get("workflow"), "call's 'workflow'"),
            "inputs": checked_inputs([thaw(spec.get("input"))], "call's input"),
            "concurrency": 1,
            "failure": FAIL_FAST,
        }
        return StepResult(request, pause=True)

    return {
        "map": NodeDefinition(map_node),
        "parallel": NodeDefinition(parallel_node),
        "call": NodeDefinition(call_node),
    }


__all__ = [
    "COLLECT",
    "FAIL_FAST",
    "ChildRunFailed",
    "ChildrenOutcome",
    "child_node_types",
    "child_run_problems",
]
