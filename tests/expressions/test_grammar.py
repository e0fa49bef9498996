"""Every construct of the Jexl grammar parses and evaluates as in JavaScript Jexl 2.x."""

from __future__ import annotations

from typing import Any

import pytest

from refluxo.errors import ExpressionError
from refluxo.expressions import evaluate, validate_expression

SCOPE: dict[str, Any] = {
    "a": {"b": {"c": 3}, "list": [10, 20, 30], "key": "b"},
    "items": [
        {"name": "pen", "price": 5, "tags": ["office"]},
        {"name": "lamp", "price": 25, "tags": ["home", "light"]},
        {"name": "desk", "price": 150, "tags": []},
    ],
    "input": "an identifier that starts with 'in'",
    "index": 7,
    "trueish": "t",
    "nullable": "n",
    "falsey": "f",
    "inner": {"in": 1, "true": 2},
    "$dollar": 1,
    "_under": 2,
    "x": 4,
    "word": "hello",
    "café": 1,
    "имя": 2,
}


def run(expression: str) -> Any:
    return evaluate(expression, SCOPE)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # literals
        ("1", 1),
        ("1.5", 1.5),
        ("15.0", 15),
        ("'single'", "single"),
        ('"double"', "double"),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'back\\\\slash'", "back\\slash"),
        ("'kept\\n'", "kept\\n"),
        ("'two\\\\and\\\\more'", "two\\and\\\\more"),  # Jexl unescapes the first `\\` only
        ("'C:\\temp\\'", "C:\\temp\\"),  # no other quote ends it: its last escaped one does
        ("'a\\\\'b'", "a\\'b"),
        ("'", ""),  # a quote that ends no string is the empty string, as in Jexl
        ("1 + '", "1"),  # `\'` unescaped first: `\\'` is a backslash, then a quote
        ("'\"'", '"'),
        ('"\'"', "'"),
        ("''", ""),
        ("true", True),
        ("false", False),
        ("null", None),
        # identifiers, including ones that start with keywords
        ("input", SCOPE["input"]),
        ("index", 7),
        ("trueish", "t"),
        ("nullable", "n"),
        ("falsey", "f"),
        ("$dollar", 1),
        ("_under", 2),
        ("inner.in", 1),
        ("inner.true", 2),
        # member access
        ("a.b.c", 3),
        ('a["b"]["c"]', 3),
        ("a['b'].c", 3),
        ("a[a.key].c", 3),
        ("a.list[0]", 10),
        ("a.list[2]", 30),
        ("a.list[1 + 1]", 30),
        ("a.list.length", 3),
        ("word.length", 5),
        ("word[1]", "e"),
        # filters with relative identifiers
        ("items[.price > 10]", [SCOPE["items"][1], SCOPE["items"][2]]),
        ("items[.price > 10].name", "lamp"),
        ("items[.price > 10][1].name", "desk"),
        ("items[.name == 'pen' || .price > 100].name", "pen"),
        ("items[.price > 1000]", []),
        ("items[.tags[.length == 5][0]].name", "lamp"),
        ("items[.tags[.length > 99]].name", "pen"),  # an empty array is truthy
        ("a.b[.c == 3]", [{"c": 3}]),
        ("a.b[.c == 4]", []),
        ("missing[.c == 3]", []),
        (".x", 4),
        # transforms are covered in test_engine; function calls with no registry fail
        # array and object literals
        ("[]", []),
        ("[1, 'two', [3]]", [1, "two", [3]]),
        ("{}", {}),
        ("{a: 1, \"b c\": 2, 'd': x}", {"a": 1, "b c": 2, "d": 4}),
        ("{a: {b: [1, {c: 2}]}}.a.b[1].c", 2),
        ("[1, 2, 3][1]", 2),
        # parentheses
        ("(1 + 2) * 3", 9),
        ("((((x))))", 4),
        # ternary and the short form
        ("x > 3 ? 'big' : 'small'", "big"),
        ("x > 5 ? 'big' : 'small'", "small"),
        ("x > 5 ? 'big' : x > 3 ? 'medium' : 'small'", "medium"),
        ("x ? x > 3 ? 'a' : 'b' : 'c'", "a"),
        ("missing ?: 'fallback'", "fallback"),
        ("x ?: 'fallback'", 4),
        ("0 ? : 'zero is falsy'", "zero is falsy"),
        # `!`, and `-` as a number's sign (as Jexl's lexer reads it: a run of signs is one)
        ("!true", False),
        ("!!x", True),
        ("!missing", True),
        ("-4", -4),
        ("- 4", -4),
        ("--4", -4),
        ("2 - -4", 6),
        ("x--1", 5),
        ("!-1", False),
        ("2 ^ -1", 0.5),
        ("[-1, {a: -0.5}]", [-1, {"a": -0.5}]),
        # binary operators
        ("7 + 2", 9),
        ("7 - 2", 5),
        ("7 * 2", 14),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 2", 1),
        ("2 ^ 10", 1024),
        ("1 == 1", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("1 > 2", False),
        ("2 >= 3", False),
        ("'ell' in word", True),
        ("'pen' in ['pen', 'lamp']", True),
        ("true && 'yes'", "yes"),
        ("false || 'no'", "no"),
    ],
)
def test_constructs(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("2 * 3 ^ 2", 18),
        ("2 ^ 3 ^ 2", 64),  # left-associative, as Jexl
        ("10 - 2 - 3", 5),
        ("100 / 10 / 5", 2),
        ("2 + 3 * 4 ^ 2 / 8", 8),
        ("2 * 3 % 4", 6),  # % binds as tightly as ^, as in Jexl: 2 * (3 % 4)
        ("8 // 3 % 2", 8),
        ("7 % 4 ^ 2", 9),  # (7 % 4) ^ 2
        ("2 ^ 3 % 5", 3),
        ("1 + 2 == 3", True),
        ("1 < 2 == true", True),  # one level: (1 < 2) == true
        ("3 > 2 > 1", False),  # (3 > 2) > 1 is true > 1
        ("true || false && false", False),  # || and && share a level in Jexl
        ("false && true || true", True),
        ("!true == false", True),  # unary binds tighter than ==
        ("-2 ^ 2", 4),  # as Jexl's negative literal
        ("1 + 1 ? 'a' : 'b'", "a"),  # the ternary is loosest
        ("1 || 0 ? 'a' : 'b'", "a"),
        ("'a' + 'b' in 'xaby'", True),  # + binds tighter than in
        ("[1, 2].length + 1", 3),  # member access binds tighter than +
        ("!a.b.c", False),
        ("1\ufeff+\u00a02", 3),  # JavaScript's white space, as Jexl reads it
        ("café + имя", 3),  # Latin-1 and Cyrillic letters in names, as in Jexl
    ],
)
def test_precedence(expression: str, expected: Any) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1 +", "Error: Unexpected end of expression: 1 +"),
        ("x ? 1", "Error: Unexpected end of expression: x ? 1"),
        ("1 + * 2", "Error: Token *  (binaryOp) unexpected in expression: 1 + * "),
        ("a # b", "Error: Invalid expression token: #"),
        ("a..b", "Error: Token . (dot) unexpected in expression: a.."),
        ("1e3", "Error: Token e3 (identifier) unexpected in expression: 1e3"),  # no exponents
        ("x|", "Error: Unexpected end of expression: x|"),
        ("1 = 1", "Error: Invalid expression token: ="),
        ("café \u00d7 2", "Error: Invalid expression token: \u00d7"),
        (".5", "Error: Token 5 (literal) unexpected in expression: .5"),  # as in Jexl
        ("-.5", "Error: Invalid expression token: -."),
        ("1 +\x1c2", "Error: Invalid expression token: \x1c"),  # not JavaScript white space
        ("-x", "Error: Invalid expression token: -x"),  # `-` is only a number's sign
        ("-(1)", "Error: Invalid expression token: -("),
        ("1 + -", "Error: Token - (binaryOp) unexpected in expression: 1 + -"),
    ],
)
def test_syntax_errors_are_worded_as_in_jexl(expression: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        run(expression)
    assert str(caught.value) == f"Jexl Error in [{expression}]: {reason}"


@pytest.mark.parametrize(
    "expression", ["[" + "1, " * 1_300, "1 " + "+ 1" * 1_300 + " + )", "'" + "#" * 4_000]
)
def test_syntax_errors_of_long_expressions_stay_short(expression: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        run(expression)
    assert len(str(caught.value)) < 800


@pytest.mark.parametrize("expression", ["", "   \n "])
def test_a_blank_expression_is_valid_but_fails_as_in_jexl(expression: str) -> None:
    assert validate_expression(expression) == (True, None)
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression)
    assert str(caught.value) == (
        f"Jexl Error in [{expression}]: TypeError: Cannot read properties of null (reading 'type')"
    )


def test_whitespace_and_newlines_are_ignored() -> None:
    assert run("\n  a.b\n  .c +\t1\n") == 4
