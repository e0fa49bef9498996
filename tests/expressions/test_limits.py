"""Every bound fails fast with a clear ExpressionLimitError, never a RecursionError."""

from __future__ import annotations

import time
from typing import Any

import pytest

from refluxo.errors import ExpressionError, LimitExceededError
from refluxo.expressions import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    MAX_STRING_LENGTH,
    ExpressionLimitError,
    evaluate,
    render,
    validate_expression,
)
from refluxo.expressions.equality import strict_equal
from refluxo.expressions.failures import LimitFailure


def test_limit_values() -> None:
    assert MAX_EXPRESSION_LENGTH == 4_096
    assert MAX_NESTING_DEPTH == 64
    assert MAX_STRING_LENGTH == 1_000_000


def test_limit_errors_are_both_expression_and_limit_errors() -> None:
    assert issubclass(ExpressionLimitError, ExpressionError)
    assert issubclass(ExpressionLimitError, LimitExceededError)


@pytest.mark.parametrize(
    "expression",
    [
        "!" * 4_000 + "x",
        "!(" * 1_300 + "x" + ")" * 1_300,
        "(" * 2_000 + "1" + ")" * 2_000,
        "[" * 2_000 + "]" * 2_000,
        "a" + "[0]" * 1_300,
        "a" + ".b" * 2_000,
        "x|t" * 1_000,
        "f(" * 1_300 + ")" * 1_300,
        "{a:" * 1_000 + "1" + "}" * 1_000,
        "1" + " ? 1 : 1" * 500,
        "1" + " + 1" * 1_000,
    ],
)
def test_deep_nesting_is_rejected_before_compiling(expression: str) -> None:
    assert len(expression) <= MAX_EXPRESSION_LENGTH
    started = time.perf_counter()
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(expression)
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert message.startswith("Jexl Error in [")
    assert message.endswith("expression nests deeper than 64 levels")
    assert f"({len(expression)} characters)" in message  # long expressions are shortened
    assert len(message) < 400


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert evaluate("(" * 63 + "1" + ")" * 63) == 1  # 64 levels
    with pytest.raises(ExpressionLimitError):
        evaluate("(" * 64 + "1" + ")" * 64)
    assert evaluate("!" * 63 + "true") is False


def test_long_expressions_are_rejected() -> None:
    expression = "1 + " * 1_249 + "1"
    assert len(expression) == 4_997
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(expression)
    assert str(caught.value).endswith("expression is 4997 characters long; the limit is 4096")
    ok, message = validate_expression("(" * 4_000 + "1" + ")" * 4_000)
    assert not ok
    assert message is not None
    assert "the limit is 4096" in message
    assert evaluate("1" + " " * 4_095) == 1  # exactly at the limit


BIG = "a" * 600_000


@pytest.mark.parametrize(
    "expression",
    ["s + s", "s + 1 + s", "(s + '') + s", "'' + [s, s]", "[s, s] + 1", "'x' in [s, s] + s"],
)
def test_strings_cannot_grow_past_the_limit(expression: str) -> None:
    with pytest.raises(ExpressionLimitError) as caught:
        evaluate(expression, {"s": BIG})
    assert str(caught.value) == (
        f"Jexl Error in [{expression}]: string result would be longer than 1000000 characters"
    )


def test_interpolation_cannot_grow_past_the_limit() -> None:
    with pytest.raises(ExpressionLimitError, match="longer than 1000000 characters"):
        render("{{ s }} and {{ s }}.", {"s": BIG})
    with pytest.raises(ExpressionLimitError, match="longer than 1000000 characters"):
        render("x {{ [s, s] }}", {"s": BIG})


def test_large_values_that_do_not_grow_are_fine() -> None:
    assert render("{{ s }}", {"s": BIG}) is BIG
    assert render("x{{ s }}", {"s": BIG}) == "x" + BIG
    assert evaluate("[s, s]", {"s": BIG}) == [BIG, BIG]
    assert evaluate("s.length", {"s": BIG}) == 600_000


def test_shared_sub_lists_cannot_amplify_a_string() -> None:
    value: list[Any] = ["x" * 1_000]
    for _ in range(30):
        value = [value, value]  # 2**30 leaves behind 31 list objects
    with pytest.raises(ExpressionLimitError, match="longer than 1000000"):
        evaluate("'' + v", {"v": value})


def test_deep_or_cyclic_data_cannot_recurse_without_bound() -> None:
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(ExpressionLimitError, match="nested deeper than 64 levels"):
        evaluate("'' + v", {"v": deep})
    cycle: list[Any] = [1]
    cycle.append(cycle)
    other: list[Any] = [1]
    other.append(other)
    with pytest.raises(ExpressionLimitError, match="nested deeper than 64 levels"):
        render("x {{ v }}", {"v": cycle})
    # charged as it compares: the work budget ends the walk first, and the comparison's
    # own bound ends it where nothing is metered
    with pytest.raises(ExpressionLimitError, match="work limit"):
        evaluate("a == b", {"a": cycle, "b": other})
    with pytest.raises(LimitFailure, match="comparison visits more than 100000 values"):
        strict_equal(cycle, other)
    assert evaluate("a == a", {"a": cycle}) is True
    assert evaluate("a[1][1][1][0]", {"a": cycle}) == 1
