"""``{{ expression }}`` templates inside strings, as Refluxo's JexlEngine reads them.

A string that is exactly one ``{{ ... }}`` evaluates to the expression's value with its
type (a number stays a number, a list a list). Any other string containing ``{{ ... }}``
interpolates each one as JavaScript's ``String(value ?? "")`` would render it. Expressions
are delimited as Refluxo's regular expression ``/{{(.+?)}}/`` delimits them: the first
``}}`` closes an expression (so an object literal cannot end with ``}}`` inside a
template). Parsed templates are cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from refluxo.errors import ExpressionError
from refluxo.expressions.evaluator import (
    CompiledExpression,
    Registry,
    Scope,
    compile_expression,
)
from refluxo.expressions.failures import expression_error
from refluxo.expressions.jsvalues import string_too_long
from refluxo.expressions.limits import CACHE_SIZE, MAX_STRING_LENGTH

_EXPRESSION = re.compile(r"\{\{(.+?)\}\}", re.DOTALL)

Renderer = Callable[[Scope], Any]
"""A compiled template: ``render(scope) -> value``."""


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
        return "".join(pieces)

    return render


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_template(text: str) -> Renderer:
    """Parse ``text`` and compile each expression in it (cached).

    Raises ``ExpressionError`` naming the first invalid expression.
    """
    matches = list(_EXPRESSION.finditer(text))
    if not matches:
        return _unchanged(text)
    first = matches[0]
    if len(matches) == 1 and first.start() == 0 and first.end() == len(text):
        return compile_expression(first.group(1).strip()).evaluate
    segments: list[tuple[str, CompiledExpression]] = []
    position = 0
    for match in matches:
        expression = compile_expression(match.group(1).strip())
        segments.append((text[position : match.start()], expression))
        position = match.end()
    return _interpolation(text, segments, text[position:])


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
    return compile_template(template)(Scope(scope, transforms=transforms, functions=functions))


def validate_template(text: str) -> tuple[bool, str | None]:
    """``(True, None)`` if every ``{{ }}`` in ``text`` parses, else ``(False, message)``."""
    if "{{" not in text:
        return True, None
    try:
        compile_template(text)
    except ExpressionError as error:
        return False, str(error)
    return True, None
