"""``{{ }}`` templates: one expression keeps its type; mixed text interpolates like String()."""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refluxo.errors import ExpressionError
from refluxo.expressions import (
    CACHE_SIZE,
    compile_expression,
    compile_template,
    render,
    validate_expression,
    validate_template,
)
from refluxo.expressions.template import delimited, is_whole

DATA: dict[str, Any] = {
    "count": 15,
    "price": 15.0,
    "ratio": 0.1,
    "huge": 1e21,
    "tiny": 1e-7,
    "inf": math.inf,
    "nan": math.nan,
    "yes": True,
    "no": False,
    "nothing": None,
    "list": [1, None, "a", [2, 3]],
    "obj": {"k": "v"},
    "name": "Ada",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ count }}", 15),
        ("{{count}}", 15),
        ("{{ price }}", 15.0),
        ("{{ count * 2 }}", 30),
        ("{{ name }}", "Ada"),
        ("{{ yes }}", True),
        ("{{ list }}", DATA["list"]),
        ("{{ obj }}", DATA["obj"]),
        ("{{ [count, name] }}", [15, "Ada"]),
        ("{{ {n: count} }}", {"n": 15}),
        ("{{ nothing }}", None),
        ("{{ missing.deep.path }}", None),
        ("{{ 1 +\n 2 }}", 3),
    ],
)
def test_a_single_expression_keeps_its_type(template: str, expected: Any) -> None:
    result = render(template, DATA)
    assert result == expected
    assert type(result) is type(expected)


def test_a_single_expression_returns_the_data_itself() -> None:
    assert render("{{ obj }}", DATA) is DATA["obj"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{ name }}!", "Hello Ada!"),
        ("{{ count }} items", "15 items"),
        ("n={{ price }}", "n=15"),
        ("{{ count }}{{ count }} ", "1515 "),
        (" {{ count }}", " 15"),
        ("{{ 'a' }} and {{ 'b' }}.", "a and b."),
        ("{{ count }}\n{{ count }}", "15\n15"),  # a line break: not one expression
        ("r={{ ratio + 0.2 }}", "r=0.30000000000000004"),
        ("h={{ huge }}", "h=1e+21"),
        ("t={{ tiny }}", "t=1e-7"),
        ("i={{ inf }} {{ 0 - inf }}", "i=Infinity -Infinity"),
        ("n={{ nan }}", "n=NaN"),
        ("b={{ yes }}/{{ no }}", "b=true/false"),
        ("x={{ nothing }}|{{ missing }}|{{ missing.path }}", "x=||"),
        ("l={{ list }}", "l=1,,a,2,3"),
        ("e={{ [] }}", "e="),
        ("o={{ obj }}", "o=[object Object]"),
        ("s={{ 10 / 4 }}", "s=2.5"),
        ("q={{ 10 / 5 }}", "q=2"),
        ("p={{ 2 ^ 70 }}", "p=1.1805916207174113e+21"),
    ],
)
def test_mixed_text_interpolates_like_javascript_string(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


@pytest.mark.parametrize("text", ["", "plain text", "{ not } a template", "{{}}", "{{ open"])
def test_text_without_a_complete_expression_is_returned_unchanged(text: str) -> None:
    assert render(text, DATA) is text


def test_a_whole_string_template_is_one_expression_up_to_its_last_braces() -> None:
    # As Refluxo's /^{{(.+?)}}$/ reads it: everything between the outer braces.
    assert render("{{ {a: {b: 1}} }}") == {"a": {"b": 1}}
    assert render("{{ 'x }}-{{ y' }}") == "x }}-{{ y"
    with pytest.raises(ExpressionError) as caught:
        render("{{ count }}-{{ count }}", DATA)
    assert str(caught.value) == (
        "Jexl Error in [ count }}-{{ count ]: "
        "Error: Token } (closeCurl) unexpected in expression: count }"
    )


def test_in_text_the_first_closing_braces_end_an_expression() -> None:
    # As with Refluxo's /{{(.+?)}}/, an object literal cannot end with "}}" inside text.
    with pytest.raises(ExpressionError) as caught:
        render("x {{ {a: {b: 1}} }}")
    assert str(caught.value) == (
        "Jexl Error in [ {a: {b: 1]: Error: Unexpected end of expression: {a: {b: 1"
    )
    assert render("x {{ {a: {b: 1} } }}") == "x [object Object]"


def test_errors_name_the_failing_expression_as_written() -> None:
    with pytest.raises(ExpressionError) as caught:
        render("ok {{ name }} broken {{ count + }}", DATA)
    assert str(caught.value) == (
        "Jexl Error in [ count + ]: Error: Unexpected end of expression: count +"
    )


def test_templates_and_expressions_are_cached_with_a_bound() -> None:
    assert compile_template.cache_info().maxsize == CACHE_SIZE
    assert compile_expression.cache_info().maxsize == CACHE_SIZE
    assert compile_template("cached {{ count }}") is compile_template("cached {{ count }}")
    assert compile_expression("count + 1") is compile_expression("count + 1")


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("", True),
        ("   ", True),
        ("a.b.c", True),
        ("items[.price > 10]|sum", True),
        ("unregistered(1, 2)", True),  # names are checked when evaluated
        ("a ? b : c", True),
        ("a +", False),
        ("a ? b", False),
        ("(a", False),
        ("{{ a }}", False),
        ("a # b", False),
        ("!" * 100 + "a", False),
        ("1" * 5000, False),
    ],
)
def test_validate_expression(expression: str, valid: bool) -> None:
    ok, message = validate_expression(expression)
    assert ok is valid
    if valid:
        assert message is None
    else:
        assert message is not None
        assert message.startswith("Jexl Error in [")


def test_validate_expression_message() -> None:
    assert validate_expression("a +") == (
        False,
        "Jexl Error in [a +]: Error: Unexpected end of expression: a +",
    )


@pytest.mark.parametrize(
    ("template", "valid"),
    [
        ("plain", True),
        ("{{ a }}", True),
        ("{{ a }} and {{ b.c }}.", True),
        ("{{ a }} and {{ b.c }}", False),  # one expression: `a }} and {{ b.c`
        ("{{ }}", True),
        ("x {{ a + }} y", False),
        ("{{ a }} {{ ( }}", False),
    ],
)
def test_validate_template(template: str, valid: bool) -> None:
    ok, message = validate_template(template)
    assert ok is valid
    assert (message is None) is valid


REFLUXO_DELIMITERS = re.compile(r"\{\{(.+?)\}\}", re.DOTALL)
"""Refluxo's own delimiters (across lines, where refluxo goes further): the scanner must
find exactly what this finds."""
REFLUXO_WHOLE = re.compile(r"\{\{([^\n\r\u2028\u2029]+?)\}\}")
"""Refluxo's whole-string pattern ``/^{{(.+?)}}$/``, whose ``.`` stops at line breaks."""


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(alphabet="{}a \n\r\u2028", max_size=30))
def test_a_whole_string_expression_is_what_refluxos_pattern_matches(text: str) -> None:
    assert is_whole(text) is (REFLUXO_WHOLE.fullmatch(text) is not None)


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(alphabet="{}a \n", max_size=30))
def test_the_scanner_finds_what_refluxos_regular_expression_finds(text: str) -> None:
    expected = [match.span() for match in REFLUXO_DELIMITERS.finditer(text)]
    assert list(delimited(text)) == expected


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        ("{{}}", []),
        ("{{}}}", [(0, 5)]),
        ("{{{a}}}", [(0, 6)]),
        ("{{a}}{{b}}", [(0, 5), (5, 10)]),
        ("{{a}} {{", [(0, 5)]),
        ("{{\n}}", [(0, 5)]),
        ("{" * 10 + "}", []),
    ],
)
def test_scanner_edge_cases(text: str, spans: list[tuple[int, int]]) -> None:
    assert list(delimited(text)) == spans


def test_scanning_is_linear_in_the_text() -> None:
    text = "{{" * 500_000 + "}" + " {{x}}" * 1_000
    started = time.perf_counter()
    spans = list(delimited(text))
    assert len(spans) == 1_000
    assert spans[0] == (0, 1_000_007)  # the first "}}" closes the first "{{"
    assert list(delimited("{{" * 500_000)) == []
    assert time.perf_counter() - started < 2  # the lazy regex took hours on this text
