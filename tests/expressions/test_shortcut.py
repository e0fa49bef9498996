"""The shortcut parser builds exactly Lark's tree, or leaves the expression to Lark."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refluxo.expressions.parser import jexl_parser
from refluxo.expressions.shortcut import shortcut_parse


@pytest.mark.parametrize(
    "expression",
    [
        "a",
        " a ",
        "nodes.n1.last.data.x + 1",
        "a.b['c'][0]",
        'a["b c"].d',
        "a.in",
        "a.true.null",
        "a . b",
        "x == 'ok'",
        "1 + 2",
        "'a' + \"b\"",
        "a.b // c.d",
        "a[0.5] ^ 2",
        "a && b",
        "a || b.c",
        "a <= 1",
        "a != 'x\\'y'",
        "inputs.index",
    ],
)
def test_shortcut_matches_lark(expression: str) -> None:
    tree = shortcut_parse(expression)
    assert tree is not None
    assert tree == jexl_parser().parse(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "a + b + c",
        "true",
        "a in b",
        "a[b]",
        "a.5",
        ".5",
        "'s'.x",
        "1.x",
        "-a",
        "!a",
        "a|t",
        "f(a)",
        "(a)",
        "a ? b : c",
        "a +",
        "a b",
        "a[0",
        "[1]",
        "a # b",
    ],
)
def test_everything_else_goes_to_lark(expression: str) -> None:
    assert shortcut_parse(expression) is None


TOKENS = st.sampled_from(
    [
        "a",
        "b",
        "in",
        "true",
        "null",
        "index",
        "1",
        "2.5",
        ".5",
        "'s'",
        '"t"',
        ".",
        "[",
        "]",
        "+",
        "-",
        "//",
        "/",
        "==",
        "<",
        "<=",
        "&&",
        "||",
        "!",
        "(",
        ")",
        "|",
        "?",
        ":",
        ",",
    ]
)


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(st.tuples(TOKENS, st.sampled_from(["", " ", "\n"])), max_size=9))
def test_any_token_sequence_the_shortcut_accepts_parses_identically(
    parts: list[tuple[str, str]],
) -> None:
    expression = "".join(token + space for token, space in parts)
    tree = shortcut_parse(expression)
    if tree is not None:
        assert tree == jexl_parser().parse(expression)


NAMES = st.sampled_from(["a", "b", "in", "true", "null", "index", "$x", "_y"])
LITERALS = st.sampled_from(["1", "2.5", ".5", "'s'", '"t"', "'a\\'b'"])
ACCESSORS = st.one_of(NAMES.map(lambda name: "." + name), LITERALS.map(lambda key: f"[{key}]"))
OPERANDS = st.one_of(
    LITERALS,
    st.tuples(NAMES, st.lists(ACCESSORS, max_size=4)).map(lambda t: t[0] + "".join(t[1])),
)
OPERATORS = st.sampled_from(["+", "-", "*", "/", "//", "%", "^", "==", "!=", "<", ">=", "&&", "||"])
NEAR_MISSES = st.sampled_from(["", "", "", " ", "in", "|", "?", "(", ".", "[", "]", "!", "-"])


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.tuples(OPERANDS, st.lists(st.tuples(OPERATORS, OPERANDS), max_size=2)),
    NEAR_MISSES,
    st.integers(0, 40),
)
def test_near_valid_expressions_parse_identically(
    shape: tuple[str, list[tuple[str, str]]], extra: str, position: int
) -> None:
    first, rest = shape
    expression = first + "".join(f" {operator} {operand}" for operator, operand in rest)
    expression = expression[:position] + extra + expression[position:]
    tree = shortcut_parse(expression)
    if tree is not None:
        assert tree == jexl_parser().parse(expression)
