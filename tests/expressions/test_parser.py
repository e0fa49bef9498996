"""The recursive-descent parser builds exactly Lark's tree, and refuses exactly what Lark
refuses (where Lark finds the error, worded as Jexl words it); it is linear and never
deeply recursive."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from refluxo.expressions import MAX_NESTING_DEPTH, ExpressionLimitError, evaluate
from refluxo.expressions.failures import Failure, LimitFailure
from refluxo.expressions.parser import (
    PARSE_COST,
    PARSE_TOKEN_COST,
    descend,
    jexl_parser,
    parse,
    parse_cost,
    tokenize,
)
from tests.expressions.adversarial import (
    amplifying_expressions,
    expressions,
    nested_filter_expressions,
)


def same_tree(first: Any, second: Any) -> bool:
    """Tree equality without recursion (Lark's ``==`` recurses once per level), tokens
    compared with their types."""
    pending = [(first, second)]
    while pending:
        left, right = pending.pop()
        if isinstance(left, Tree):
            if not isinstance(right, Tree) or left.data != right.data:
                return False
            if len(left.children) != len(right.children):
                return False
            pending.extend(zip(left.children, right.children, strict=True))
        elif isinstance(left, Token):
            if not isinstance(right, Token) or (left.type, str(left)) != (right.type, right):
                return False
        elif left != right:  # None placeholders
            return False
    return True


def lark_tree(text: str) -> Tree[Token] | None:
    try:
        return jexl_parser().parse(text)
    except UnexpectedInput:
        return None


def assert_parsed_as_lark(text: str) -> None:
    try:
        mine = descend(text)
    except LimitFailure:  # too deep: Lark's tree is too deep as well, or it refuses
        reference = lark_tree(text)
        assert reference is None or _depth(reference) > MAX_NESTING_DEPTH, text
        return
    reference = lark_tree(text)
    if reference is None:
        assert mine is None, text
    else:
        assert mine is not None, text
        assert same_tree(mine, reference), text


def _depth(tree: Tree[Token]) -> int:
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend(
            (child, depth if child.data in ("arguments", "pairs", "pair") else depth + 1)
            for child in node.children
            if isinstance(child, Tree)
        )
    return deepest


VALID = [
    "a",
    " a ",
    "a.b.c",
    "nodes.n1.last.data.x + 1",
    "a.b['c'][0]",
    'a["b c"].d',
    "a . b",
    "a\n.b",
    "$a._b",
    "1 + 2 * 3 ^ 2 ^ 1 - 4 // 2 % 3",
    "a && b || c == d in e",
    "a != b <= c >= d < e > f",
    "-2 ^ 2",
    "2 ^ -1",
    "!a == b",
    "!!a",
    "--1",
    "2 - -1",
    "1 - - - 1",
    "[-1, -0.5, - 2]",
    "a ? b : c ? d : e",
    "a ? b ? c : d : e",
    "a ?: b",
    "0 ? : 'x'",
    "(a ? b : c) + 1",
    "items[.price > 10].name",
    "items[.tags[.length == 5][0]].name",
    ".x",
    ".a.b",
    ".true",
    "x|t",
    "x|t()",
    "x|t(1, 2)|u",
    "x|t (1)",
    "!a|t",
    "-1.5.b",
    "f()",
    "f(1, [2], {a: 3})",
    "in(1)",
    "{}",
    "[]",
    "{a: 1, 'b': 2, \"c\": 3, true: 4, in: 5, null: 6}",
    "{a: {b: [1, {c: 2}]}}.a.b[1].c",
    "a.true.in.null",
    "in",
    "in in in",
    "a in b",
    "a in(b)",
    "1.x",
    "1.5.x",
    "'s'.length",
    "(a).b",
    "[1, 2][0]",
    "true.x",
    "null.x",
    "a[b][c].d|e(f)[g]",
    "'a\\'b'",
    '"x\\"y"',
    "'back\\\\slash'",
    "'C:\\temp\\'",  # no other quote ends it: it ends at its last escaped quote
    "' + 1",  # a quote that ends no string is the empty string, as in Jexl
    '"',
    "'multi\nline'",
    "a||b",
    "a|| b",
    "((((x))))",
    "trueish || nullable || falsey",
    "inputs.index",
    "a[0.5] ^ 2",
    "input.café + имя * ÿ",  # ASCII, Latin-1 and Cyrillic letters, as in Jexl
]

INVALID = [
    "1 +",
    "(1",
    "x ? 1",
    "1 + * 2",
    "a # b",
    "a..b",
    "1e3",
    "a.b()",
    "'open",
    "'a\\\\' + 'b'",  # `\\` is not one escape: the string runs on to `+ '`
    "x|",
    "{a: 1,}",
    "1 = 1",
    "a === b",
    "!=a",
    "a input",
    "a inb",
    "true(1)",
    "1.5.5",
    ".5",  # `.` then `5`, as in Jexl
    "1 + .5",
    "a.5",
    "a. 5",
    "a|||b",
    "a ? b :",
    "a ?",
    "{a}",
    "{a:}",
    "{'a' 1}",
    "{1: 2}",
    "[1,]",
    "[,]",
    "f(,)",
    "f(1 2)",
    "1 2",
    "a b",
    "a[0",
    "a]",
    ")",
    "a\u00d7b",  # Jexl's names hold Latin-1 letters, but not the multiplication sign
    "ё",  # nor Cyrillic letters past я
    "a & b",
    "?",
    ":",
    "a ?: ",
    "-a",
    "--a",
    "-(1)",
    "-'1'",
    "-true",
    "!-a",
    "1 + -",
    "-",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_expressions_parse_as_lark_parses_them(text: str) -> None:
    assert lark_tree(text) is not None
    assert_parsed_as_lark(text)
    tree, cost = parse(text)
    assert same_tree(tree, lark_tree(text))
    assert cost == PARSE_COST + PARSE_TOKEN_COST * len(tokenize(text))


@pytest.mark.parametrize("text", INVALID)
def test_invalid_expressions_are_refused_in_jexls_words(text: str) -> None:
    assert lark_tree(text) is None
    assert descend(text) is None
    with pytest.raises(Failure) as caught:
        parse(text)
    assert str(caught.value).startswith(  # Lark's error, worded as Jexl words it
        (
            "Error: Invalid expression token: ",
            "Error: Token ",
            "Error: Unexpected end of expression: ",
        )
    )


def test_the_largest_expressions_parse_as_lark_parses_them() -> None:
    for text in [
        "[" + ",".join(["1"] * 2_041) + "]",
        "(" + "||".join(["a"] * 1_300) + ")",
        "x" + ".b" * 2_000,
        "!" * 4_000 + "x",
        "[" + ",".join(["{a: [1, 'x']}"] * 300) + "]",
    ]:
        assert_parsed_as_lark(text)


def test_nesting_stops_the_parser_before_python_recursion_gets_deep() -> None:
    limit, frames = sys.getrecursionlimit(), 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    sys.setrecursionlimit(frames + 400)  # 5 frames per level: 65 levels take 325
    try:
        for text in ["(" * 2_000 + "1" + ")" * 2_000, "[" * 2_000, "1" + " ? 1 : 1" * 500]:
            with pytest.raises(LimitFailure, match="nests deeper than 64 levels"):
                descend(text)
        assert descend("(" * 64 + "1" + ")" * 64) is not None  # the depth check decides
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ExpressionLimitError, match="nests deeper than 64 levels"):
        evaluate("(" * 64 + "1" + ")" * 64)


def test_parse_cost_counts_tokens() -> None:
    assert tokenize(" a.b [ 'c d' ] + 1.5 ") == ["a", ".", "b", "[", "'c d'", "]", "+", "1.5"]
    assert parse_cost(0) == PARSE_COST
    assert parse("a.b['c d'] + 1.5")[1] == parse_cost(8)


TOKENS = st.sampled_from(
    [
        "a",
        "b",
        "in",
        "true",
        "null",
        "index",
        "f",
        "é",
        "ж",
        "\u00d7",
        "'\\'",
        "\\",
        "1",
        "2.5",
        ".5",
        "'s'",
        '"t"',
        ".",
        "[",
        "]",
        "{",
        "}",
        "(",
        ")",
        "+",
        "-",
        "*",
        "//",
        "/",
        "%",
        "^",
        "==",
        "!=",
        "<",
        "<=",
        ">=",
        "&&",
        "||",
        "!",
        "|",
        "?",
        ":",
        ",",
    ]
)


@settings(max_examples=1_500, deadline=None, database=None)
@given(st.lists(st.tuples(TOKENS, st.sampled_from(["", " ", "\n", "\ufeff", "\x1c"])), max_size=12))
def test_any_token_sequence_parses_or_fails_as_in_lark(parts: list[tuple[str, str]]) -> None:
    assert_parsed_as_lark("".join(token + space for token, space in parts))


NAMES = st.sampled_from(["a", "b", "in", "true", "null", "index", "$x", "_y", "é", "inж"])
LITERALS = st.sampled_from(["1", "2.5", ".5", "'s'", '"t"', "'a\\'b'", "[]", "{}", "[1, a]"])
ACCESSORS = st.one_of(
    NAMES.map(lambda name: "." + name),
    LITERALS.map(lambda key: f"[{key}]"),
    NAMES.map(lambda name: f"|{name}"),
    NAMES.map(lambda name: f"|{name}(1, a)"),
    st.just("[.a > 1]"),
)
OPERANDS = st.one_of(
    LITERALS,
    st.tuples(NAMES, st.lists(ACCESSORS, max_size=4)).map(lambda t: t[0] + "".join(t[1])),
    NAMES.map(lambda name: f"{name}(1)"),
    st.tuples(st.sampled_from(["", "!", "-", "!-"]), NAMES).map("".join),
    st.tuples(st.sampled_from(["-", "!-", "- -"]), LITERALS).map("".join),
)
OPERATORS = st.sampled_from(
    ["+", "-", "*", "/", "//", "%", "^", "==", "!=", "<", ">=", "&&", "||", "in", "?", ":"]
)
NEAR_MISSES = st.sampled_from(["", "", "", " ", "in", "|", "?", "(", ")", ".", "[", "]", "!"])


@settings(max_examples=1_500, deadline=None, database=None)
@given(
    st.tuples(OPERANDS, st.lists(st.tuples(OPERATORS, OPERANDS), max_size=4)),
    NEAR_MISSES,
    st.integers(0, 60),
)
def test_near_valid_expressions_parse_or_fail_as_in_lark(
    shape: tuple[str, list[tuple[str, str]]], extra: str, position: int
) -> None:
    first, rest = shape
    text = first + "".join(f" {operator} {operand}" for operator, operand in rest)
    assert_parsed_as_lark(text[:position] + extra + text[position:])


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(st.one_of(expressions, nested_filter_expressions, amplifying_expressions))
def test_generated_expressions_parse_as_lark_parses_them(text: str) -> None:
    assert_parsed_as_lark(text)
