"""The work and size budgets: what is charged, who shares a budget, and how one fails."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from refluxo import Context, MemoryContext, NodeResult
from refluxo.errors import ExpressionError, LimitExceededError, TransientError
from refluxo.expressions import (
    CHARACTERS_PER_OPERATION,
    MAX_BUILT_SIZE,
    MAX_OPERATIONS,
    ExpressionLimitError,
    JexlTransformEngine,
    Scope,
    compile_expression,
    compile_template,
    evaluate,
    render,
)
from refluxo.expressions.budget import UNMETERED, Meter, enter, leave, meter
from refluxo.expressions.engine import resolve
from refluxo.expressions.failures import LimitFailure

WORK = f"expression work limit of {MAX_OPERATIONS} operations exceeded"
SIZE = f"expression size limit of {MAX_BUILT_SIZE} characters and elements built exceeded"


def charged(expression: str, variables: dict[str, Any]) -> tuple[float, float]:
    """Operations and size one evaluation of ``expression`` is charged, less its weight."""
    scope = Scope(variables)
    compiled = compile_expression(expression)
    compiled.evaluate(scope)
    return scope.meter.spent - compiled.weight, scope.meter.built


def test_budget_values() -> None:
    assert MAX_OPERATIONS == 400_000
    assert MAX_BUILT_SIZE == 4_000_000
    assert CHARACTERS_PER_OPERATION == 16


def test_a_meter_fails_on_the_charge_past_its_budget() -> None:
    small = Meter(operations=10, size=5)
    small.spend(10)
    small.build(5)
    assert (small.spent, small.built) == (10, 5)
    with pytest.raises(LimitFailure, match="work limit of 10 operations exceeded"):
        small.spend(1)
    with pytest.raises(LimitFailure, match="size limit of 5 characters and elements"):
        small.build(1)
    small.read(CHARACTERS_PER_OPERATION - 1)  # a short read costs nothing more


@pytest.mark.parametrize(
    ("expression", "limit"),
    [
        ("a[.x || a[.x || a[.x || true]]]", WORK),
        ("'q' in b || 'q' in b || 'q' in b || 'q' in b || 'q' in b", WORK),
        ("[s + s, s + s, s + s, s + s, s + s]", SIZE),
    ],
)
def test_an_exceeded_budget_is_an_expression_limit_error_naming_it(
    expression: str, limit: str
) -> None:
    variables = {"a": [{"x": 0}] * 100, "b": list(range(100_000)), "s": "x" * 500_000}
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(expression, variables)
    assert str(caught.value) == f"Jexl Error in [{expression}]: {limit}"
    assert isinstance(caught.value, ExpressionError)
    assert isinstance(caught.value, LimitExceededError)


def test_a_filter_is_charged_its_predicate_per_item_before_it_loops() -> None:
    predicate = compile_expression(".x > 1").weight
    spent, built = charged("a[.x > 1].length", {"a": [{"x": k} for k in range(10)]})
    assert spent == 10 * (predicate + 3)
    assert built == 8  # the elements kept
    assert charged("a[.x > 1].length", {"a": []}) == (0, 0)


def test_nested_filters_charge_every_activation() -> None:
    items = {"a": [{"x": 0}] * 10}
    inner = compile_expression(".x || 1").weight + 3
    outer = compile_expression(".x || a[.x || 1]").weight + 3
    spent, _ = charged("a[.x || a[.x || 1]].length", items)
    assert spent == 10 * outer + 10 * (10 * inner)


def test_a_container_result_is_charged_for_its_json_check() -> None:
    spent, built = charged("a", {"a": list(range(400))})
    # checked in C: eight, a quarter per value, another for its numbers (JSON holds them)
    assert (spent, built) == (8 + 400 // 4 + 400 // 4, 0)
    spent, built = charged("a", {"a": [str(k) for k in range(400)]})
    assert (spent, built) == (8 + 400 // 4, 0)
    spent, built = charged("a", {"a": [1.5] * 399 + [float("nan")]})
    assert (spent, built) == (8 + 400 // 4 + 400 // 4 + 400, 400)  # converted, copied
    spent, built = charged("a", {"a": [{"x": 1}] * 4})
    # the list checked (8 + 1) and found not flat, opened (4) with four entries (6 each);
    # the one object it holds four times checked once (8)
    assert spent == 9 + 4 + 6 * 4 + 8


def test_membership_is_charged_per_element_and_search_per_character() -> None:
    assert charged("1 in a", {"a": list(range(1_000))})[0] == 1_001
    text = "ab" * 8_000
    assert charged("'zz' in s", {"s": text})[0] == (len(text) + 2) // CHARACTERS_PER_OPERATION
    assert charged("'z' in 'abc'", {})[0] == 0


def test_comparing_containers_is_charged_per_value() -> None:
    spent, _ = charged("a == b", {"a": [1, 2, 3], "b": [1, 2, 3]})
    assert spent == 4 * 4 + 20  # four values visited, one array opened
    spent, _ = charged("a == b", {"a": [1, 2, 3], "b": [1, 5, 3]})
    assert spent == 3 * 4 + 20  # until the first difference
    items = [[1, 2], [1, 3], [], {}, 1, "x", [1, 2, 3]]
    spent, _ = charged("[1, 3] in a", {"a": items})
    # the scan (4 per element), two comparisons of three values (the second is equal), and
    # the elements of another length or kind skipped
    assert spent == 4 * len(items) + 1 + 2 * (3 * 4 + 20)


def test_parsing_is_charged_by_the_engine_whether_or_not_it_is_cached() -> None:
    text = "{{ [1, 2][0] + a.b }}"
    template = compile_template(text)
    assert template.parse_cost == compile_expression("[1, 2][0] + a.b").parse_cost > 0
    engine = JexlTransformEngine()
    for _ in range(2):  # the second time the template is cached
        scope = engine.scope(MemoryContext(), {}, None)
        resolve({"x": text}, scope)
        expression = compile_expression("[1, 2][0] + a.b")
        assert scope.meter.spent == template.parse_cost + expression.weight
    compile_template.cache_clear()
    compile_expression.cache_clear()
    scope = engine.scope(MemoryContext(), {}, None)
    resolve({"x": text, "y": text}, scope)  # the same template twice: charged twice
    assert scope.meter.spent == 2 * (template.parse_cost + expression.weight)


def test_a_parse_the_budget_cannot_pay_fails_as_the_cached_one_would() -> None:
    text = "{{ [" + ", ".join(["1"] * 1_000) + "] }}"
    engine = JexlTransformEngine()
    messages = []
    for _ in range(2):
        compile_template.cache_clear()
        compile_expression.cache_clear()
        for _ in range(2):  # not cached, then cached
            scope = engine.scope(MemoryContext(), {}, None)
            scope.meter.operations = 1_000
            with pytest.raises(ExpressionLimitError) as caught:
                resolve({"x": text}, scope)
            messages.append(str(caught.value))
    assert len(set(messages)) == 1
    assert messages[0].endswith(WORK)


def test_strings_built_are_charged_to_the_size_budget() -> None:
    assert charged("s + s", {"s": "abc"})[1] == 6
    assert charged("'' + [1, 22, 333]", {})[1] == 3 + 8 + 8  # literal, join, concatenation
    assert charged("{a: 1, b: [s]}", {"s": "x"})[1] == 3
    assert charged("s", {"s": "x" * 1_000})[1] == 0  # read, not built
    scope = Scope({"s": "abc"})
    assert compile_template("<{{ s }}>")(scope) == "<abc>"
    assert scope.meter.built == 5


def test_a_scope_is_one_budget_shared_by_its_evaluations() -> None:
    scope = Scope({"a": list(range(100_000))})
    compiled = compile_expression("-1 in a")
    for _ in range(3):
        compiled.evaluate(scope)
    with pytest.raises(ExpressionLimitError, match="work limit"):
        compiled.evaluate(scope)
    assert evaluate("-1 in a", {"a": list(range(100_000))}) is False  # a new scope each call


def test_the_templates_of_one_node_input_share_one_budget() -> None:
    engine = JexlTransformEngine()
    data = {"a": list(range(100_000)), "x": "{{ -1 in input.a }}"}
    assert engine.transform(data, MemoryContext(), None)["x"] is False
    data.update({f"y{k}": "{{ -1 in input.a }}" for k in range(4)})
    with pytest.raises(ExpressionLimitError, match="work limit"):
        engine.transform(data, MemoryContext(), None)
    assert engine.render("{{ -1 in a }}", {"a": data["a"]}) is False


def test_the_meter_is_current_only_during_an_evaluation() -> None:
    seen: list[Meter] = []

    def spy(value: Any) -> Any:
        seen.append(meter())
        return value

    engine = JexlTransformEngine(transforms={"spy": spy})
    scope = engine.scope(MemoryContext(), {}, None)
    compile_expression("1|spy").evaluate(scope)
    assert seen == [scope.meter]
    assert meter() is UNMETERED
    with pytest.raises(ExpressionError):
        compile_expression("(1|spy)|missing").evaluate(scope)
    assert meter() is UNMETERED


def test_a_nested_evaluation_uses_its_own_budget_and_restores_the_outer_one() -> None:
    inner = JexlTransformEngine()
    seen: list[Meter] = []

    def nested(value: Any) -> Any:
        result = inner.evaluate("[1, 2, 3][.x || true]")
        seen.append(meter())
        return result

    outer = JexlTransformEngine(transforms={"nested": nested})
    scope = outer.scope(MemoryContext(), {}, None)
    assert compile_expression("0|nested").evaluate(scope) == [1, 2, 3]
    assert seen == [scope.meter]


def test_the_history_list_is_built_once_per_scope() -> None:
    results = [NodeResult.model_construct(output=k, timestamp=k, error=None) for k in range(50)]
    scope = JexlTransformEngine().scope(MemoryContext.from_mapping({"n": results}), {}, None)
    compiled = compile_expression("nodes.n.all.length")
    assert compiled.evaluate(scope) == 50
    built = scope.meter.built
    assert built == 4 * 50
    assert compiled.evaluate(scope) == 50
    assert scope.meter.built == built
    history = compile_expression("nodes.n.all").evaluate(scope)
    assert type(history) is list  # a new list for each result
    history.append(1)
    assert compile_expression("nodes.n.all.length").evaluate(scope) == 50
    with pytest.raises(TypeError, match="read-only"):
        history[0]["data"] = 1  # the records are shared, so read-only


def test_outside_an_evaluation_operators_are_not_metered() -> None:
    from refluxo.expressions.equality import contains

    assert contains(-1, list(range(MAX_OPERATIONS * 2))) is False
    assert UNMETERED.spent != UNMETERED.spent or UNMETERED.operations == float("inf")


def test_enter_and_leave_nest() -> None:
    first, second = Meter(), Meter()
    token = enter(first)
    inner = enter(second)
    assert meter() is second
    leave(inner)
    assert meter() is first
    leave(token)
    assert meter() is UNMETERED


class FlakyContext(Context):
    """A context whose node ``bad`` cannot be read right now."""

    def appended(self, node_id: str, result: NodeResult) -> Context:
        raise NotImplementedError

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        if node_id == "bad":
            raise TransientError("busy")
        raise KeyError(node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(["bad"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    "template",
    [
        "{{ nodes.bad.output }}",
        "{{ input.a[nodes.bad.output == .x] }}",
        "n={{ [1, 2][.x || nodes.bad.last] }}",
        "{{ 'bad' in nodes }}",
        "{{ input.a == nodes.bad.all }}",
    ],
)
def test_a_store_failure_passes_through_the_budgeted_paths_untouched(template: str) -> None:
    engine = JexlTransformEngine()
    with pytest.raises(TransientError, match="busy") as caught:
        engine.transform({"a": [{"x": 1}], "v": template}, FlakyContext(), None)
    assert type(caught.value) is TransientError
    assert meter() is UNMETERED
    assert render("{{ 1 }}") == 1
