"""Parsing Jexl expression text into a syntax tree, within the length and depth bounds.

The grammar lives in ``grammar.lark`` next to this module. Lark's LALR parser keeps its
state on an explicit stack, so even pathological input (thousands of ``(`` or ``!``) cannot
exhaust Python's recursion limit; the tree's depth is then checked, again with an explicit
stack, before the compiler (which recurses once per level) ever sees it. The commonest
expressions skip Lark altogether (see :mod:`~refluxo.expressions.shortcut`).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from refluxo.expressions.failures import Failure, LimitFailure
from refluxo.expressions.limits import MAX_EXPRESSION_LENGTH, MAX_NESTING_DEPTH
from refluxo.expressions.shortcut import shortcut_parse

LIST_RULES: Final = frozenset({"arguments", "pairs", "pair"})
"""Grammar rules that only group their parent's operands: they add no nesting level."""

_NAMED_TERMINALS: Final = {
    "NAME": "identifier",
    "NUMBER": "number",
    "STRING": "string",
    "$END": "end of expression",
    "_IN": "'in'",
}
_MAX_EXPECTED_SHOWN: Final = 8


@functools.cache
def jexl_parser() -> Lark:
    """The Jexl parser, built once on first use (building takes tens of milliseconds)."""
    grammar = resources.files("refluxo.expressions").joinpath("grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=True)


def parse(text: str) -> Tree[Token]:
    """Parse expression ``text``; raise :class:`Failure` naming the offending position.

    Raises :class:`LimitFailure` when the text is longer than :data:`MAX_EXPRESSION_LENGTH`
    or nests deeper than :data:`MAX_NESTING_DEPTH`.
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise LimitFailure(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    tree = shortcut_parse(text)
    if tree is None:
        try:
            tree = jexl_parser().parse(text)
        except UnexpectedInput as error:
            raise Failure(_describe(error)) from None
    check_depth(tree)
    return tree


def check_depth(tree: Tree[Token]) -> None:
    """Raise :class:`LimitFailure` if ``tree`` nests deeper than :data:`MAX_NESTING_DEPTH`."""
    pending: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_NESTING_DEPTH:
            raise LimitFailure(f"expression nests deeper than {MAX_NESTING_DEPTH} levels")
        for child in node.children:
            if isinstance(child, Tree):
                pending.append((child, depth if child.data in LIST_RULES else depth + 1))


def _describe(error: UnexpectedInput) -> str:
    """Jexl-style wording for a Lark syntax error, with a 0-based position."""
    if isinstance(error, UnexpectedCharacters):
        return f"Invalid expression token {error.char!r} at position {error.pos_in_stream}"
    if isinstance(error, UnexpectedEOF):
        return "Unexpected end of expression"
    if isinstance(error, UnexpectedToken):
        expected = _expected(error.expected)
        if error.token.type == "$END":
            return f"Unexpected end of expression{expected}"
        position = error.token.start_pos
        return f"Token {str(error.token)!r} unexpected at position {position}{expected}"
    return str(error)  # pragma: no cover - Lark raises only the three kinds above


def _expected(names: set[str]) -> str:
    shown = sorted({_terminal_text(name) for name in names})
    if not shown or len(shown) > _MAX_EXPECTED_SHOWN:
        return ""
    return f" (expected {', '.join(shown)})"


def _terminal_text(name: str) -> str:
    if name in _NAMED_TERMINALS:
        return _NAMED_TERMINALS[name]
    try:
        pattern = jexl_parser().get_terminal(name).pattern
    except KeyError:
        return name
    return repr(pattern.value) if isinstance(pattern, PatternStr) else name
