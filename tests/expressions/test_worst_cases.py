"""The attacks on expression evaluation end quickly, with the outcome each must have.

Each case of the issue (number conversion on caller strings, the template scanner, nested
filters, quadratic membership, amplification, Python objects in ``globals``) and the other
known ways of multiplying work, from ``adversarial.CASES``. Every one of them used to take
seconds to hours, or hundreds of megabytes; each must now finish or fail with an
``ExpressionError`` within its budgets.

Bounds are asserted on the meter's counters, which are deterministic; wall-clock time is
only a generous backstop (the cases take about 100 ms at most, the backstop is 2 s) so that
a loaded machine cannot make the tests flaky.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from typing import Any

import pytest

from refluxo.errors import ExpressionError
from refluxo.expressions import (
    CHARACTERS_PER_OPERATION,
    MAX_BUILT_SIZE,
    MAX_OPERATIONS,
    ExpressionLimitError,
    Scope,
    compile_expression,
    compile_template,
    render,
)
from refluxo.expressions.numeric import CONVERSION_COST, string_to_number
from refluxo.expressions.parser import PARSE_COST, PARSE_TOKEN_COST, parse_cost, tokenize
from refluxo.expressions.template import template_in
from tests.expressions.adversarial import (
    CASES,
    MIB,
    SIZE_LIMIT,
    WORK_LIMIT,
    Case,
    Opaque,
    case_scope,
    run_case,
)

BACKSTOP_SECONDS = 2.0
MAX_PEAK_BYTES = 50 * 1024 * 1024


def _run(case: Case) -> tuple[str, Scope, float, int, dict[str, Any] | None]:
    """Outcome (``"ok"`` or the error message), scope, seconds, peak bytes, results.

    Timed and traced in two runs: tracing allocations slows small ones tenfold.
    """
    scope = case_scope(case)
    results = None
    started = time.perf_counter()
    try:
        results = run_case(case, scope)
        outcome = "ok"
    except ExpressionError as error:
        outcome = str(error)
    elapsed = time.perf_counter() - started
    traced = case_scope(case)
    tracemalloc.start()
    try:
        run_case(case, traced)
    except ExpressionError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, scope, elapsed, peak, results


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_attack_finishes_or_fails_within_its_budgets(case: Case) -> None:
    outcome, scope, elapsed, peak, _ = _run(case)
    assert outcome.endswith(case.outcome), outcome
    meter = scope.meter
    # A budget is overdrawn only by the charge that stops the evaluation.
    assert meter.operations >= 0 or outcome.endswith(WORK_LIMIT)
    assert meter.size >= 0 or outcome.endswith(SIZE_LIMIT)
    assert peak < MAX_PEAK_BYTES, peak
    assert elapsed < BACKSTOP_SECONDS, elapsed


def _case(name: str) -> Case:
    (case,) = [case for case in CASES if case.name.startswith(name)]
    return case


def test_a_100_kb_amount_converts_in_one_pass() -> None:
    # Was ~17 minutes with the GIL held: the decimal regex backtracked quadratically.
    outcome, scope, _, _, results = _run(_case("number: 100 KB"))
    assert outcome == "ok"
    assert results is not None
    assert results["total"] is None  # Number("11...1x") is NaN, which JSON writes as null
    read = 100_001 // CHARACTERS_PER_OPERATION
    compiled = compile_expression("nodes.start.output.amount * 1.2")
    assert scope.meter.spent == compiled.parse_cost + compiled.weight + CONVERSION_COST + read
    assert math.isinf(string_to_number("1" * 100_000))


@pytest.mark.parametrize("operator", ["*", "-", "/", "<", ">", "==", "<=", "!=", "%"])
def test_every_operator_converts_a_caller_string_linearly(operator: str) -> None:
    # 8,000 digits and an "x" took 6.6 s; 1 MiB now costs one linear pass.
    text = "1" * (MIB - 1) + "x"
    scope = Scope({"amount": text})
    value = compile_expression(f"amount {operator} 1").evaluate(scope)
    assert value in (False, True, None)  # None: NaN, which JSON writes as null
    assert scope.meter.spent < MAX_OPERATIONS // 4


def test_white_space_around_a_number_is_charged_as_read() -> None:
    # 40 conversions of 1 MiB of U+2029, U+3000 or U+FEFF took 180 to 370 ms: stripping
    # searched JavaScript's 24 white space characters for each one. Trimming is now a
    # character class (test_numeric.py), so the read charge covers it: the conversion the
    # budget cannot pay fails before it starts.
    case = _case("number: 1 MiB of white space")
    outcome, scope, _, _, _ = _run(case)
    assert outcome.endswith(WORK_LIMIT)
    text = case.data()["s"]
    conversion = CONVERSION_COST + len(text) // CHARACTERS_PER_OPERATION
    compiled = compile_expression("nodes.start.output.s * 1")
    one = compiled.parse_cost + compiled.weight + conversion
    paid = MAX_OPERATIONS // one  # templates the budget pays for (17 of the 40)
    assert paid * one < MAX_OPERATIONS < scope.meter.spent == (paid + 1) * one


@pytest.mark.parametrize(
    ("name", "compared"),
    [("membership of objects", False), ("membership of arrays", True)],
)
def test_membership_of_containers_charges_each_comparison_as_it_runs(
    name: str, compared: bool
) -> None:
    # `{'a': 1} in a` over 99,000 `{}` took 0.4 to 2 s before failing: the comparisons were
    # charged after the scan. Elements that cannot be equal (another length, another kind)
    # are now skipped for the scan's charge, and every comparison is charged value by
    # value as it runs, so the budget stops the scan after those it can pay for.
    outcome, scope, _, _, results = _run(_case(name))
    compiled = compile_expression(_case(name).templates["v"][2:-2].strip())
    scan = compiled.parse_cost + compiled.weight + 4 * 99_000 + 1
    if compared:
        assert outcome.endswith(WORK_LIMIT)
        # each comparison: the two arrays (4), opening them (20), their first values (4);
        # the one the budget cannot pay fails at its first charge past it (a value and an
        # array at most): about a hundred comparisons of the 99,000 ran
        assert 50 < (MAX_OPERATIONS - scan) // 28 < 200
        assert MAX_OPERATIONS < scope.meter.spent <= MAX_OPERATIONS + 24
    else:
        assert outcome == "ok"
        assert results == {"v": False}
        assert scope.meter.spent == scan


def test_a_comparison_stops_at_the_work_limit_while_it_runs() -> None:
    nested: list[Any] = [0] * 50
    left = [[list(nested) for _ in range(50)] for _ in range(50)]
    right = [[list(nested) for _ in range(50)] for _ in range(50)]
    scope = Scope({"a": left, "b": right})
    with pytest.raises(ExpressionLimitError, match="work limit"):
        compile_expression("a == b").evaluate(scope)
    assert MAX_OPERATIONS < scope.meter.spent <= MAX_OPERATIONS + 24


@pytest.mark.parametrize(
    ("name", "last_charge"),
    [
        ("parse: 15 templates", parse_cost(4_083)),  # a whole template, from the cache
        ("parse: 6,611 expressions", parse_cost(3)),  # one expression, as it is parsed
    ],
)
def test_parsing_a_nodes_templates_is_charged_whether_or_not_it_is_cached(
    name: str, last_charge: int
) -> None:
    # 15 templates of 4 KiB took 1.44 s to parse on first evaluation, 6,600 tiny ones in
    # one string 0.88 s: parsing was not charged. It is now, per token, as it parses when
    # the cache does not hold the template, from the cache otherwise: the same charge,
    # and the same outcome.
    case = _case(name)
    compile_template.cache_clear()
    compile_expression.cache_clear()
    cold = _run(case)
    warm = _run(case)
    compile_template.cache_clear()  # the expressions cached, not the templates
    partly = _run(case)
    assert cold[0].endswith(WORK_LIMIT)
    assert cold[0] == warm[0] == partly[0]
    assert cold[1].meter.spent == warm[1].meter.spent == partly[1].meter.spent
    # stopped by the first charge past the budget, before that parse or evaluation
    assert MAX_OPERATIONS < cold[1].meter.spent <= MAX_OPERATIONS + last_charge


def test_a_parse_is_charged_per_token() -> None:
    for text in ["[1]", "a.b.c + 1", _case("parse: 15 templates").templates["k0"][2:-2].strip()]:
        tokens = len(tokenize(text))
        assert compile_expression(text).parse_cost == PARSE_COST + PARSE_TOKEN_COST * tokens
    text = "{{ [1] }}, {{ a.b }}."
    direct, charged = Scope(), Scope()
    assert compile_template(text)(direct) == "1, ."  # compiled by the caller: not charged
    assert template_in(charged, text)(charged) == "1, ."
    parsed = compile_expression("[1]").parse_cost + compile_expression("a.b").parse_cost
    assert compile_template(text).parse_cost == parsed
    assert charged.meter.spent == direct.meter.spent + parsed


def test_unclosed_braces_are_scanned_once() -> None:
    # `\{\{(.+?)\}\}` took 7.9 s on "{{" * 8,000 (quadratic); the scan is two find()s.
    text = "{{" * 32_768
    started = time.perf_counter()
    assert render(text) == text
    assert render("x" + text + "}") == "x" + text + "}"  # "{{{...}" holds no expression
    assert time.perf_counter() - started < BACKSTOP_SECONDS


def test_exponential_nested_filters_stop_at_the_work_limit() -> None:
    # 175 characters of nested filters took 6.2 s, 233 more than 8 s: exponential.
    outcome, scope, _, _, _ = _run(_case("nested filters, 166"))
    assert outcome.endswith(WORK_LIMIT)
    assert scope.meter.spent <= MAX_OPERATIONS + 1_000  # stopped by a small charge


def test_quadratic_membership_stops_at_the_work_limit() -> None:
    # `input.a[.v in input.b]` took 4.3 s at 2,000 items.
    outcome, _, _, _, _ = _run(_case("membership, 2,000"))
    assert outcome == f"Jexl Error in [ input.a[.v in input.b] ]: {WORK_LIMIT}"
    assert isinstance(_error(_case("membership, 2,000")), ExpressionLimitError)


def test_amplification_stops_at_the_size_limit_in_bounded_memory() -> None:
    # A 2.7 KB expression built 292 MB from a 500 KB input.
    outcome, scope, _, peak, _ = _run(_case("amplification, 2.7 KB"))
    assert outcome.endswith(SIZE_LIMIT)
    assert MAX_BUILT_SIZE < scope.meter.built <= MAX_BUILT_SIZE + 1_000_000
    assert peak < MAX_PEAK_BYTES


def test_globals_give_out_json_values_only() -> None:
    # `{{ globals }}` returned modules and functions.
    outcome, _, _, _, results = _run(_case("`{{ globals }}`"))
    assert outcome == "ok"
    assert results == {
        "v": {"key": "value", "nested": {"fine": [1, "two"], "bad": [None, 1]}},
        "w": [None, {"fine": [1, "two"], "bad": [None, 1]}],
    }


def test_many_templates_in_one_node_share_one_budget() -> None:
    case = _case("64 KiB of templates")
    outcome, _, _, _, _ = _run(case)
    assert outcome.endswith(WORK_LIMIT)
    single = Case(case.name, case.attack, {"t0": case.templates["t0"]}, case.data, "ok")
    assert _run(single)[0] == "ok"  # each alone is within the budget


def _error(case: Case) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        run_case(case, case_scope(case))
    return caught.value


def test_the_opaque_marker_is_not_json() -> None:
    assert render("{{ x }}", {"x": Opaque()}) is None
