"""``{{ expression }}`` templates inside strings, delimited as Refluxo's JexlEngine does.

Refluxo reads a string in two ways, and so does this module:

* a string that starts with ``{{`` and ends with ``}}``, with at least one character and
  no line break between them (Refluxo's ``/^{{(.+?)}}$/``), is one expression: all of
  the text between the outer braces, even if it holds ``}}`` (``{{ {a: {b: 1}} }}`` is an
  object; ``{{ a }}-{{ b }}`` is the expression ``a }}-{{ b``, which fails as it fails in
  Refluxo). It evaluates to the expression's value with its type (a number stays a
  number, a list a list);
* any other string interpolates each ``{{ ... }}`` as JavaScript's ``String(value ?? "")``
  would render it, each one closed by the first ``}}`` at least one character after its
  ``{{`` (Refluxo's ``/{{(.+?)}}/``), so an object literal cannot end with ``}}`` there.

One deliberate difference: Refluxo's patterns do not cross line breaks, so it leaves a
``{{ ... }}`` that spans lines as text; here it is an expression like any other (and a
string that is exactly one such template keeps the value's type).

An expression's text is kept as written, spaces included, so that an error names it as
Refluxo does (``Jexl Error in [ a + ]: ...``). Parsed templates are cached.

The delimiters are found with two ``str.find`` calls per expression, in time linear in the
text: a lazy regular expression would retry every ``{{`` against the rest of the text, and
take quadratic time on a string of unclosed ``{{``. The interpolated text is charged to the
scope's size budget, and parsing the template's expressions to its work budget
(:func:`template_in`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from refluxo.errors import ExpressionError
from refluxo.expressions.evaluator import (
    CompiledExpression,
    Registry,
    Scope,
    charged,
    compile_charged,
)
from refluxo.expressions.failures import Failure, expression_error, from_failure, shown
from refluxo.expressions.jsvalues import string_too_long
from refluxo.expressions.limits import CACHE_SIZE, MAX_STRING_LENGTH

Renderer = Callable[[Scope], Any]
"""What a compiled template runs: ``render(scope) -> value``."""


class Template:
    """A compiled template: call it with a scope to render it."""

    __slots__ = ("_render", "parse_cost", "text")

    def __init__(self, text: str, render: Renderer, parse_cost: int) -> None:
        self.text = text
        self._render = render
        self.parse_cost = parse_cost
        """What parsing its expressions is charged (see :func:`template_in`)."""

    def __call__(self, scope: Scope) -> Any:
        return self._render(scope)

    def __repr__(self) -> str:
        return f"Template({shown(self.text)!r})"


def _unchanged(text: str) -> Renderer:
    def render(scope: Scope) -> str:
        return text

    return render


def _interpolation(
    text: str, segments: list[tuple[str, CompiledExpression]], tail: str
) -> Renderer:
    fixed = len(tail) + sum(len(literal) for literal, _ in segments)

    def render(scope: Scope) -> str:
        total = fixed
        pieces: list[str] = []
        for literal, expression in segments:
            shown = expression.display(scope)
            total += len(shown)
            if total > MAX_STRING_LENGTH:
                raise expression_error(text, str(string_too_long()), limit=True)
            pieces.append(literal)
            pieces.append(shown)
        pieces.append(tail)
        try:
            scope.meter.build(total)
        except Failure as failure:
            raise from_failure(text, failure) from None
        return "".join(pieces)

    return render


def delimited(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each ``{{ ... }}`` in ``text``, as ``/{{(.+?)}}/g`` finds them:
    ``text[start:end]`` is the whole match, ``text[start + 2:end - 2]`` the expression.

    Linear: once no ``}}`` follows an opening, none can follow a later one either.
    """
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            return
        close = text.find("}}", start + 3)  # `.+?`: at least one character inside
        if close < 0:
            return
        yield start, close + 2
        position = close + 2


_LINE_BREAKS: Final = ("\n", "\r", "\u2028", "\u2029")
"""What JavaScript's ``.`` does not match: Refluxo's patterns stop at these."""


def is_whole(text: str) -> bool:
    """Whether ``text`` is one expression as Refluxo's ``/^{{(.+?)}}$/`` reads it: ``{{``
    first, ``}}`` last, at least one character and no line break between them."""
    return (
        len(text) >= 5
        and text.startswith("{{")
        and text.endswith("}}")
        and not any(line_break in text for line_break in _LINE_BREAKS)
    )


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_template(text: str) -> Template:
    """Parse ``text`` and compile each expression in it (cached).

    Raises ``ExpressionError`` naming the first invalid expression. Within an evaluation
    (see :func:`template_in`), each expression's parse is charged as it is compiled,
    whether the expression was cached or not.
    """
    if is_whole(text):
        expression = compile_charged(text[2:-2])
        return Template(text, expression.evaluate, expression.parse_cost)
    matches = list(delimited(text))
    if not matches:
        return Template(text, _unchanged(text), 0)
    if len(matches) == 1 and matches[0] == (0, len(text)):  # one template across lines
        expression = compile_charged(text[2:-2])
        return Template(text, expression.evaluate, expression.parse_cost)
    segments: list[tuple[str, CompiledExpression]] = []
    position = 0
    for start, end in matches:
        expression = compile_charged(text[start + 2 : end - 2])
        segments.append((text[position:start], expression))
        position = end
    cost = sum(expression.parse_cost for _, expression in segments)
    return Template(text, _interpolation(text, segments, text[position:]), cost)


def template_in(scope: Scope, text: str) -> Template:
    """:func:`compile_template`, parsing its expressions charged to ``scope``'s work budget
    whether or not they were cached (see :func:`~refluxo.expressions.evaluator.charged`).

    Every template of a node's input is charged when the node's input is transformed, so
    a node holding more, or larger, expressions than one budget can parse fails with an
    ``ExpressionLimitError`` instead of parsing them, and a workflow holding more distinct
    templates than the cache (:data:`~refluxo.expressions.limits.CACHE_SIZE`) cannot make
    a step parse without bound.
    """
    return charged(scope, text, compile_template)


def render(
    template: str,
    scope: Mapping[str, Any] | None = None,
    *,
    transforms: Registry | None = None,
    functions: Registry | None = None,
) -> Any:
    """Render one template string against ``scope``'s variables."""
    if "{{" not in template:
        return template
    root = Scope(scope, transforms=transforms, functions=functions)
    return template_in(root, template)(root)


def validate_template(text: str) -> tuple[bool, str | None]:
    """``(True, None)`` if every ``{{ }}`` in ``text`` parses, else ``(False, message)``."""
    if "{{" not in text:
        return True, None
    try:
        compile_template(text)
    except ExpressionError as error:
        return False, str(error)
    return True, None
