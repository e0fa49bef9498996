"""JexlTransformEngine: evaluating node input against the run's context, lazily."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from refluxo import (
    Context,
    MemoryContext,
    NodeDefinition,
    NodeResult,
    SnapshotStatus,
    WorkflowEngine,
)
from refluxo.errors import ExpressionError
from refluxo.expressions import ExpressionLimitError, JexlTransformEngine, NodesView
from refluxo.expressions.jsvalues import UNDEFINED
from refluxo.frozen import freeze


def result(output: Any, timestamp: int = 1_000, error: str | None = None) -> NodeResult:
    return NodeResult.model_construct(output=output, timestamp=timestamp, error=error, attempt=1)


def context_of(**results: list[NodeResult]) -> MemoryContext:
    return MemoryContext.from_mapping(results)


CONTEXT = context_of(
    fetch=[result({"items": [1, 2]}, 1), result({"items": [3, 4, 5]}, 2)],
    failed=[result(None, 3, "ValueError: boom")],
)


def transform(data: Any, context: Context = CONTEXT, globals: Any = None, **kw: Any) -> Any:
    return JexlTransformEngine(**kw).transform(data, context, globals)


# --- the nodes view -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ nodes.fetch.output }}", {"items": [3, 4, 5]}),
        ("{{ nodes.fetch.last.data.items[0] }}", 3),
        ("{{ nodes.fetch.last.timestamp }}", 2),
        ("{{ nodes.fetch.last.error }}", UNDEFINED),
        ("{{ nodes.fetch.all.length }}", 2),
        ("{{ nodes.fetch.all[0].data.items }}", [1, 2]),
        ("{{ nodes.fetch.all[.timestamp == 2].data.items.length }}", 3),
        ("{{ nodes.failed.last.error }}", "ValueError: boom"),
        ("{{ nodes.failed.output }}", None),
        ("{{ nodes.missing }}", UNDEFINED),
        ("{{ nodes.missing.output }}", UNDEFINED),
        ("{{ nodes.fetch.nope }}", UNDEFINED),
        ("{{ 'fetch' in nodes }}", True),
        ("{{ 'missing' in nodes }}", False),
        ("{{ nodes['fetch'].output.items[2] }}", 5),
    ],
)
def test_nodes_have_refluxos_shape(template: str, expected: Any) -> None:
    # an undefined value leaves its key out, as JSON.stringify does in Refluxo
    assert transform({"v": template}) == ({} if expected is UNDEFINED else {"v": expected})


def test_a_whole_node_or_all_nodes_become_plain_dicts() -> None:
    fetch = {
        "output": {"items": [3, 4, 5]},
        "last": {"data": {"items": [3, 4, 5]}, "timestamp": 2},
        "all": [
            {"data": {"items": [1, 2]}, "timestamp": 1},
            {"data": {"items": [3, 4, 5]}, "timestamp": 2},
        ],
    }
    assert transform("{{ nodes.fetch }}") == fetch
    assert type(transform("{{ nodes.fetch }}")) is dict
    everything = transform("{{ nodes }}")
    assert type(everything) is dict
    assert everything["fetch"] == fetch
    assert set(everything) == {"fetch", "failed"}
    assert transform("{{ [nodes.fetch.last] }}") == [fetch["last"]]


def test_node_ids_without_results_are_absent() -> None:
    context = context_of(empty=[], full=[result(1)])
    view = NodesView(context)
    assert list(view) == ["full"]
    assert len(view) == 1
    assert "empty" not in view
    assert transform("{{ nodes.empty }}", context) is None


class CountingResults(Sequence[NodeResult]):
    """A node's results that log how they are read."""

    def __init__(self, results: list[NodeResult], log: list[str]) -> None:
        self._results = results
        self._log = log

    def __getitem__(self, index: Any) -> Any:
        self._log.append(f"results[{index}]")
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[NodeResult]:
        self._log.append("results iterated")
        return iter(self._results)


class CountingContext(Context):
    """A context of many nodes that logs every read."""

    def __init__(self, size: int) -> None:
        self.log: list[str] = []
        self._results = {
            f"n{k}": CountingResults([result({"x": k}, k), result({"x": k + 1}, k)], self.log)
            for k in range(size)
        }

    def appended(self, node_id: str, result: NodeResult) -> Context:
        raise NotImplementedError

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        self.log.append(f"context[{node_id}]")
        return self._results[node_id]

    def __iter__(self) -> Iterator[str]:
        self.log.append("context iterated")
        return iter(self._results)

    def __len__(self) -> int:
        self.log.append("context len")
        return len(self._results)


def test_only_the_referenced_node_is_read() -> None:
    context = CountingContext(1_000)
    data = {
        "x": "{{ nodes.n500.last.data.x + 1 }}",
        "label": "node {{ nodes.n500.last.data.x }}",
        "out": "{{ nodes.n500.output.x }}",
    }
    assert transform(data, context) == {"x": 502, "label": "node 501", "out": 501}
    # One context read for three references; only the last result; `all` never built.
    assert context.log == ["context[n500]", "results[-1]", "results[-1]", "results[-1]"]


def test_all_is_built_only_when_read() -> None:
    context = CountingContext(10)
    assert transform("{{ nodes.n3.all.length }}", context) == 2
    assert context.log == ["context[n3]", "results iterated"]


def test_scope_has_input_and_globals() -> None:
    data = {"a": 2, "b": "{{ input.a * 10 }}", "c": "{{ globals.key }}", "d": "{{ input.b }}"}
    assert transform(data, globals={"key": "secret"}) == {
        "a": 2,
        "b": 20,
        "c": "secret",
        "d": "{{ input.a * 10 }}",  # input is the data before this transform
    }


# --- walking the input --------------------------------------------------------------------


def test_every_string_in_nested_containers_is_evaluated() -> None:
    data = {
        "list": ["{{ 1 + 1 }}", "plain", 3, None, True, {"deep": ["{{ 'x' + 'y' }}"]}],
        "{{ keys are not templates }}": "n={{ nodes.fetch.last.data.items.length }}",
        "tuple": ("{{ 2 }}",),
    }
    assert transform(data) == {
        "list": [2, "plain", 3, None, True, {"deep": ["xy"]}],
        "{{ keys are not templates }}": "n=3",
        "tuple": [2],
    }


def test_transform_never_mutates_its_input() -> None:
    data: dict[str, Any] = {"a": ["{{ 1 }}", {"b": "{{ 2 }}"}], "c": "plain", "d": {"e": [1, 2]}}
    before = copy.deepcopy(data)
    out = transform(data)
    assert data == before
    assert out == {"a": [1, {"b": 2}], "c": "plain", "d": {"e": [1, 2]}}
    assert out is not data
    assert out["a"] is not data["a"]
    assert out["d"] is not data["d"]
    assert out["d"]["e"] is not data["d"]["e"]


def test_frozen_node_data_can_be_transformed() -> None:
    data = freeze({"a": ["{{ 1 + 1 }}"], "b": {"c": "{{ 'x' }}"}})
    out = transform(data)
    assert out == {"a": [2], "b": {"c": "x"}}
    assert type(out) is dict
    out["a"].append(3)  # the result is an ordinary mutable copy


def test_scalars_pass_through() -> None:
    for value in (None, 1, 1.5, True, "no template"):
        assert transform(value) == value


def test_deeply_nested_input_is_rejected_clearly() -> None:
    data: Any = "{{ 1 }}"
    for _ in range(200):
        data = {"child": data}
    with pytest.raises(ExpressionLimitError, match="nests deeper than 64 levels"):
        transform(data)


# --- registered transforms and functions ---------------------------------------------------


def test_transforms_and_functions_are_called_with_their_arguments() -> None:
    engine = JexlTransformEngine(
        transforms={
            "upper": str.upper,
            "add": lambda value, *more: value + sum(more),
            "concat": lambda left, right: left + right,
        },
        functions={"max": max, "pair": lambda a, b: [a, b]},
    )
    data = {
        "a": "{{ 'ada'|upper }}",
        "b": "{{ 1|add(2, 3) }}",
        "c": "{{ max(1, 5, 3) }}",
        "d": "{{ pair(missing, 1) }}",  # undefined reaches a callable as None
        "e": "{{ 'ab'|upper + 'c' }}",  # a transform binds tighter than +
        "f": "{{ ['x']|concat(['y']) }}",
        "g": "hi {{ 'x'|upper|upper }}",
    }
    assert engine.transform(data, CONTEXT, None) == {
        "a": "ADA",
        "b": 6,
        "c": 5,
        "d": [None, 1],
        "e": "ABc",
        "f": ["x", "y"],
        "g": "hi X",
    }


def test_registration_is_per_engine() -> None:
    loud = JexlTransformEngine(transforms={"shout": lambda s: s + "!"})
    quiet = JexlTransformEngine(transforms={"shout": lambda s: s + "."})
    assert loud.evaluate("'a'|shout") == "a!"
    assert quiet.evaluate("'a'|shout") == "a."
    quiet.add_function("twice", lambda v: v * 2)
    assert quiet.render("{{ twice(2) }}") == 4
    assert "twice" in quiet.functions
    assert "twice" not in loud.functions


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("x|nope", "Jexl Error in [x|nope]: Error: Transform nope is not defined."),
        ("nope(1)", "Jexl Error in [nope(1)]: Error: Jexl Function nope is not defined."),
    ],
)
def test_unknown_names_are_errors(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        JexlTransformEngine().evaluate(expression)
    assert str(caught.value) == message


def test_a_failing_transform_is_an_expression_error_with_its_cause() -> None:
    def explode(value: Any) -> Any:
        raise ValueError("bad value")

    engine = JexlTransformEngine(transforms={"explode": explode})
    with pytest.raises(ExpressionError) as caught:
        engine.evaluate("1|explode")
    assert str(caught.value) == (
        "Jexl Error in [1|explode]: Transform explode raised ValueError: bad value"
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_async_transforms_are_refused() -> None:
    async def later(value: Any) -> Any:
        return value

    engine = JexlTransformEngine(transforms={"later": later})
    with pytest.raises(ExpressionError, match="returned an awaitable"):
        engine.evaluate("1|later")


def test_registration_checks_names_and_callables() -> None:
    with pytest.raises(ValueError, match="not a valid Jexl identifier"):
        JexlTransformEngine(transforms={"not valid": str.upper})
    with pytest.raises(TypeError, match="callable"):
        JexlTransformEngine(functions={"f": 42})  # type: ignore[dict-item]


# --- inside a workflow ------------------------------------------------------------------------


def echo(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {"data": data}


def workflow(expression: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "n1", "type": "echo", "data": {"val": 10}},
            {"id": "n2", "type": "echo", "data": {"val": expression}},
        ],
        "edges": [{"source": "n1", "target": "n2"}],
    }


async def test_workflow_engine_evaluates_expressions_between_nodes() -> None:
    engine = WorkflowEngine(
        workflow("{{ nodes.n1.last.data.val * 2 }}"),
        {"echo": NodeDefinition(executor=echo)},
        transform_engines=[JexlTransformEngine()],
    )
    snapshot = await engine.execute(initial_node_id="n1")
    assert snapshot.status == SnapshotStatus.COMPLETED
    assert snapshot.context["n2"][-1].output == {"val": 20}


async def test_an_invalid_expression_fails_the_run() -> None:
    engine = WorkflowEngine(
        workflow("{{ nodes.n1.last.data.val * }}"),
        {"echo": NodeDefinition(executor=echo)},
        transform_engines=[JexlTransformEngine()],
    )
    snapshot = await engine.execute(initial_node_id="n1")
    assert snapshot.status == SnapshotStatus.FAILED
    error = snapshot.context["n2"][-1].error
    assert error is not None
    assert error == (
        "ExpressionError: Jexl Error in [ nodes.n1.last.data.val * ]: "
        "Error: Unexpected end of expression: nodes.n1.last.data.val *"
    )
