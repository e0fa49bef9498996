"""A shortcut parser for the commonest expressions, producing Lark's exact tree.

Nearly every expression in a workflow is a path (``nodes.fetch.last.data.items[0]``),
sometimes combined with one literal or path (``... + 1``, ``... == 'ok'``). Lark's LALR
parser spends about 80 microseconds on such an expression, reducing it through every
precedence level; a workflow whose nodes each hold new expressions pays that once per node.
This module recognises exactly that shape with one regular expression and builds the tree
Lark would build (the tests compare the two), in a few microseconds. Anything else,
including every malformed expression, returns ``None`` and goes to Lark, so error messages
and every other construct stay Lark's.
"""

from __future__ import annotations

import re
from typing import Final

from lark import Token, Tree

_TOKENS = re.compile(
    r"""\s*(?:
        (?P<NAME>[A-Za-z_$][A-Za-z0-9_$]*)
      | (?P<NUMBER>[0-9]+(?:\.[0-9]+)?)
      | (?P<STRING>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<PUNCT>//|==|!=|<=|>=|&&|\|\||[-+*/%^<>.\[\]])
    )\s*""",
    re.VERBOSE | re.DOTALL,
)

_BINARY_RULES: Final = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "//": "floordiv",
    "%": "mod",
    "^": "pow",
    "==": "eq",
    "!=": "ne",
    "<": "lt",
    "<=": "le",
    ">": "gt",
    ">=": "ge",
    "&&": "and_",
    "||": "or_",
}
_KEYWORDS: Final = frozenset({"true", "false", "null", "in"})
_LITERAL_RULES: Final = {"NUMBER": "number", "STRING": "string"}


def _tokenize(text: str) -> list[tuple[str, str]] | None:
    tokens: list[tuple[str, str]] = []
    position, end = 0, len(text)
    while position < end:
        match = _TOKENS.match(text, position)
        if match is None or match.end() == position:
            return None
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _operand(tokens: list[tuple[str, str]], index: int) -> tuple[Tree[Token], int] | None:
    """A literal, or an identifier followed by ``.name`` and ``[literal]`` accesses."""
    if index >= len(tokens):
        return None
    kind, value = tokens[index]
    if kind in _LITERAL_RULES:
        return Tree(_LITERAL_RULES[kind], [Token(kind, value)]), index + 1
    if kind != "NAME" or value in _KEYWORDS:
        return None
    node: Tree[Token] = Tree("identifier", [Token("NAME", value)])
    index += 1
    while index < len(tokens):
        _, punct = tokens[index]
        if punct == "." and index + 1 < len(tokens) and tokens[index + 1][0] == "NAME":
            node = Tree("member", [node, Token("NAME", tokens[index + 1][1])])
            index += 2
        elif (
            punct == "["
            and index + 2 < len(tokens)
            and tokens[index + 1][0] in _LITERAL_RULES
            and tokens[index + 2] == ("PUNCT", "]")
        ):
            kind, value = tokens[index + 1]
            key: Tree[Token] = Tree(_LITERAL_RULES[kind], [Token(kind, value)])
            node = Tree("index", [node, key])
            index += 3
        else:
            break
    return node, index


def shortcut_parse(text: str) -> Tree[Token] | None:
    """Lark's tree for ``operand`` or ``operand <binary operator> operand``, else ``None``."""
    tokens = _tokenize(text)
    if not tokens:
        return None
    parsed = _operand(tokens, 0)
    if parsed is None:
        return None
    left, index = parsed
    if index == len(tokens):
        return left
    kind, operator = tokens[index]
    rule = _BINARY_RULES.get(operator) if kind == "PUNCT" else None
    if rule is None:
        return None
    parsed = _operand(tokens, index + 1)
    if parsed is None or parsed[1] != len(tokens):
        return None
    return Tree(rule, [left, parsed[0]])
