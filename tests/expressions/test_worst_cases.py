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
    render,
)
from refluxo.expressions.numeric import CONVERSION_COST
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
    assert math.isnan(results["total"])  # Number("11...1x") is NaN in JavaScript
    read = 100_001 // CHARACTERS_PER_OPERATION
    weight = compile_expression("nodes.start.output.amount * 1.2").weight
    assert scope.meter.spent == weight + CONVERSION_COST + read
    assert compile_expression("s * 1.2").evaluate(Scope({"s": "1" * 100_000})) == math.inf


@pytest.mark.parametrize("operator", ["*", "-", "/", "<", ">", "==", "<=", "!=", "%"])
def test_every_operator_converts_a_caller_string_linearly(operator: str) -> None:
    # 8,000 digits and an "x" took 6.6 s; 1 MiB now costs one linear pass.
    text = "1" * (MIB - 1) + "x"
    scope = Scope({"amount": text})
    value = compile_expression(f"amount {operator} 1").evaluate(scope)
    assert value in (False, True) or math.isnan(value)
    assert scope.meter.spent < MAX_OPERATIONS // 4


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
    assert outcome == f"Jexl Error in [input.a[.v in input.b]]: {WORK_LIMIT}"
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
