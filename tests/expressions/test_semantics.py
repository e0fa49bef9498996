"""Operators, conversions and truthiness behave as JavaScript's (Jexl runs on JavaScript)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from refluxo.expressions import JexlTransformEngine, evaluate
from refluxo.expressions.jsvalues import number_to_string

NAN = object()  # marker: the result must be NaN

SCOPE: dict[str, Any] = {
    "list": [1, 2, 3],
    "obj": {"a": 1, "b": {"c": [1, 2]}},
    "empty_list": [],
    "empty_obj": {},
    "text": "hello",
    "num_text": "42",
    "zero": 0,
    "nothing": None,
    "flag": True,
    "big": 2**60,
    "float15": 15.0,
}

TABLE: list[tuple[str, Any]] = [
    # arithmetic in doubles, integral results as int
    ("10 / 5", 2),
    ("10 + 5", 15),
    ("1 / 3", 1 / 3),
    ("0.1 + 0.2", 0.30000000000000004),
    ("float15 + 0", 15),
    ("2 ^ 10000", math.inf),
    ("-2 ^ 10001", -math.inf),
    ("10 ^ -400", 0),
    ("2 ^ 0.5", math.sqrt(2)),
    ("(0 - 8) ^ (1 / 3)", NAN),
    ("1 ^ (1 / 0)", NAN),
    ("0 ^ -1", math.inf),
    ("9007199254740992 + 1", 9007199254740992.0),  # past 2**53, as JavaScript rounds
    ("big + 0", float(2**60)),
    # division and remainder by zero
    ("1 / 0", math.inf),
    ("-1 / 0", -math.inf),
    ("0 / 0", NAN),
    ("5 % 0", NAN),
    ("-5 % 2", -1),
    ("5.5 % 2", 1.5),
    ("5 % -3", 2),
    ("7 // 2", 3),
    ("-7 // 2", -4),
    ("1 // 0", math.inf),
    # + concatenates when either side is a string
    ("'a' + 1", "a1"),
    ("1 + '2'", "12"),
    ("'x' + null", "xnull"),
    ("'x' + undefined", "xundefined"),
    ("'x' + true", "xtrue"),
    ("'x' + 1.5", "x1.5"),
    ("'x' + 0.1 * 3", "x0.30000000000000004"),
    ("'x' + list", "x1,2,3"),
    ("'x' + obj", "x[object Object]"),
    ("[] + []", ""),
    ("list + 1", "1,2,31"),
    ("empty_obj + 1", "[object Object]1"),
    # numeric + with ToNumber
    ("true + 1", 2),
    ("null + 1", 1),
    ("undefined + 1", NAN),
    ("nothing + 1", 1),
    ("missing + 1", NAN),
    ("'6' * '7'", 42),
    ("'6' - 1", 5),
    ("' 12 ' * 1", 12),
    ("'0x1F' * 1", 31),
    ("'1e3' * 1", 1000),
    ("'' * 1", 0),
    ("'abc' * 1", NAN),
    ("'1_000' * 1", NAN),
    ("'inf' * 1", NAN),
    ("'Infinity' * 1", math.inf),
    ("[5] * 2", 10),
    ("[1, 2] * 2", NAN),
    ("obj * 2", NAN),
    ("0 - '3'", -3),
    ("0 - true", -1),
    ("0 - null", 0),
    ("0 - undefined", NAN),
    # comparisons
    ("'10' < '9'", True),
    ("'10' < 9", False),
    ("'b' > 'a'", True),
    ("2 > '10'", False),
    ("null < 1", True),
    ("null >= 0", True),
    ("undefined < 1", False),
    ("undefined >= 1", False),
    ("'abc' < 1", False),
    ("'abc' >= 1", False),
    ("[2] < 10", True),
    ("true > false", True),
    # loose equality
    ("1 == '1'", True),
    ("0 == ''", True),
    ("0 == false", True),
    ("1 == true", True),
    ("'1' == true", True),
    ("2 == true", False),
    ("null == undefined", True),
    ("null == missing", True),
    ("nothing == null", True),
    ("null == 0", False),
    ("undefined == 0", False),
    ("null == false", False),
    ("'a' == 'a'", True),
    ("'a' != 'b'", True),
    ("1 != '1'", False),
    ("0 / 0 == 0 / 0", False),
    ("[1] == 1", True),
    ("[1, 2] == '1,2'", True),
    ("obj == '[object Object]'", True),
    # containers compare structurally (a deliberate difference from JavaScript)
    ("[1, 2] == [1, 2]", True),
    ("[1, 2] == [2, 1]", False),
    ("{a: 1} == {a: 1}", True),
    ("{a: 1} == {a: '1'}", False),
    ("obj == {a: 1, b: {c: [1, 2]}}", True),
    ("[] == {}", False),
    # in
    ("'ell' in text", True),
    ("'xyz' in text", False),
    ("1 in '123'", True),
    ("2 in list", True),
    ("'2' in list", False),  # strict membership
    ("[1, 2] in [[1, 2], 3]", True),
    ("'a' in obj", True),
    ("'z' in obj", False),
    ("1 in 1", False),
    ("'a' in missing", False),
    # logical operators return operand values
    ("true && 'x'", "x"),
    ("0 && 'x'", 0),
    ("'' && 'x'", ""),
    ("'a' || 'b'", "a"),
    ("0 || 'b'", "b"),
    ("missing || 'b'", "b"),
    ("missing && 'b'", None),
    ("nothing || null", None),
    # truthiness: empty containers are truthy, NaN is falsy
    ("empty_list ? 'y' : 'n'", "y"),
    ("empty_obj ? 'y' : 'n'", "y"),
    ("'' ? 'y' : 'n'", "n"),
    ("'0' ? 'y' : 'n'", "y"),
    ("0 ? 'y' : 'n'", "n"),
    ("0 / 0 ? 'y' : 'n'", "n"),
    ("nothing ? 'y' : 'n'", "n"),
    ("missing ? 'y' : 'n'", "n"),
    ("!empty_list", False),
    ("!''", True),
    ("!0.5", False),
    ("zero ?: 'default'", "default"),
    ("flag ?: 'default'", True),
    # member access on anything that is not a container is undefined
    ("missing.path.to.value", None),
    ("nothing.a", None),
    ("zero.a", None),
    ("flag.a", None),
    ("text.a", None),
    ("list[5]", None),
    ("list[-1]", None),
    ("list[1.5]", None),
    ("list['1']", 2),
    ("list['01']", None),
    ("list[1.0]", 2),
    ("list['length']", 3),
    ("obj['length']", None),
    ("text[10]", None),
    ("text[0]", "h"),
    ("obj[1]", None),
    ("{'1': 'one'}[1]", "one"),  # object keys are strings, as in JavaScript
    ("list[true]", [1, 2, 3]),  # Jexl: a boolean filter keeps or drops the subject
    ("list[false]", None),
    ("list.a", None),  # dot access on an array reads its first element's property
    ("[{a: 9}].a", 9),
]


def computed(expression: str, scope: dict[str, Any] | None = None) -> Any:
    """The value ``expression`` computes, as an operator sees it (before it becomes a JSON
    result, where NaN and the infinities are ``null``): what a transform receives."""
    seen: list[Any] = []
    engine = JexlTransformEngine(transforms={"seen": seen.append})
    engine.evaluate(f"({expression})|seen", SCOPE if scope is None else scope)
    return seen[0]


@pytest.mark.parametrize(("expression", "expected"), TABLE)
def test_javascript_semantics(expression: str, expected: Any) -> None:
    result = computed(expression)
    if expected is NAN:
        assert isinstance(result, float)
        assert math.isnan(result)
    else:
        assert result == expected
        assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (15.0, "15"),
        (-1.5, "-1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1.5e21, "1.5e+21"),
        (1e20, "100000000000000000000"),
        (2.0**60, "1152921504606847000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (1.23e-18, "1.23e-18"),
        (0.000001, "0.000001"),
        (0.0000015, "0.0000015"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (math.nan, "NaN"),
        (100.5, "100.5"),
    ],
)
def test_number_to_string_matches_javascript(number: float, text: str) -> None:
    assert number_to_string(number) == text


def test_integral_results_are_ints() -> None:
    assert type(evaluate("10 / 5")) is int
    assert type(evaluate("1.5 * 2")) is int
    assert type(evaluate("0 * -1")) is int  # no negative zero
    assert type(evaluate("2 ^ 60")) is float  # past 2**53 stays a double


def test_arithmetic_never_builds_huge_integers() -> None:
    assert evaluate("big * big * big * big * big * big", SCOPE) == float(2**60) ** 6
    assert math.isnan(computed("10 ^ 400 - 10 ^ 400"))  # inf - inf
