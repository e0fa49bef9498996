"""Generated adversarial expressions over 1 MiB of data: each finishes or fails cleanly.

Whatever Hypothesis combines (filters nested in predicates, membership, concatenation,
arithmetic on long strings, array literals repeating a costly operand), an evaluation must
end with a JSON value or an ``ExpressionError``, never overdraw a budget without failing
on it, and stay far below the wall-clock backstop and the memory bound.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from refluxo.errors import ExpressionError
from refluxo.expressions import ExpressionLimitError, Scope, compile_template
from tests.expressions.adversarial import (
    SIZE_LIMIT,
    WORK_LIMIT,
    Case,
    amplifying_expressions,
    case_scope,
    expressions,
    large_data,
    nested_filter_expressions,
)
from tests.expressions.test_results import is_json

BACKSTOP_SECONDS = 2.0
MAX_PEAK_BYTES = 50 * 1024 * 1024
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _scope() -> Scope:
    case = Case("generated", "", {}, large_data, "ok", history=100)
    return case_scope(case)


def _evaluate(expression: str, scope: Scope) -> tuple[Any, str | None]:
    try:
        return compile_template(f"{{{{ {expression} }}}}")(scope), None
    except ExpressionError as error:
        return None, str(error)


def _check(expression: str, scope: Scope, value: Any, error: str | None) -> None:
    meter = scope.meter
    assert meter.operations >= 0 or (error or "").endswith(WORK_LIMIT), expression
    assert meter.size >= 0 or (error or "").endswith(SIZE_LIMIT), expression
    if error is None:
        assert is_json(value), expression


@SETTINGS
@given(st.one_of(expressions, nested_filter_expressions, amplifying_expressions))
def test_generated_expressions_finish_or_fail_within_the_budgets(expression: str) -> None:
    scope = _scope()
    started = time.perf_counter()
    value, error = _evaluate(expression, scope)
    assert time.perf_counter() - started < BACKSTOP_SECONDS, expression
    _check(expression, scope, value, error)


@settings(SETTINGS, max_examples=10)
@given(amplifying_expressions)
def test_amplifying_expressions_stay_within_the_memory_bound(expression: str) -> None:
    scope = _scope()
    tracemalloc.start()
    try:
        value, error = _evaluate(expression, scope)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, (expression, peak)
    _check(expression, scope, value, error)


@settings(SETTINGS, max_examples=25)
@given(nested_filter_expressions)
def test_nested_filters_end_with_a_value_or_a_limit(expression: str) -> None:
    scope = _scope()
    try:
        value, error = compile_template(f"{{{{ {expression} }}}}")(scope), None
    except ExpressionLimitError as limit:  # valid expressions: any failure is a limit
        value, error = None, str(limit)
    _check(expression, scope, value, error)
