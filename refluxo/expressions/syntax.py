"""Syntax errors worded as Jexl 2 words them.

Refluxo passes Jexl's error through as ``String(error)``, so a workflow author reads one of
three texts, which these functions reproduce from where Lark found the error:

* ``Error: Invalid expression token: #``: text Jexl's lexer cannot read (also a ``-``
  before anything but a number, which Jexl's lexer reads as one token, ``-x``);
* ``Error: Token * (binaryOp) unexpected in expression: 1 + *``: a token where the
  grammar does not allow it, named with its text, the white space after it and Jexl's name
  for its kind, followed by the expression up to and including it;
* ``Error: Unexpected end of expression: 1 +``: the expression stops too early.

Jexl's parser is a state machine whose nested parts (parentheses, brackets, arguments)
end at their closing token, so where the grammars differ it can name another token or
report an unexpected end instead (``(1 +)``: Jexl says the expression ends early, this
parser that ``)`` is unexpected); the wording is always one of the three above. The
quoted text is shortened as error messages shorten expressions, so a message stays small.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

from refluxo.expressions.failures import shown
from refluxo.expressions.numeric import JS_WHITESPACE

_ELEMENT: Final = re.compile(
    r"""'(?:\\'|[^'])*'|"(?:\\"|[^"])*"
      | \btrue\b|\bfalse\b
      | //|==|!=|>=|<=|&&|\|\||\bin\b|[-.\[\]|{}:,()?+*/%^<>!]
      | [A-Za-z_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]
        [A-Za-z0-9_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]*
      | [0-9]*\.[0-9]+|[0-9]+
    """,
    re.VERBOSE,
)
"""One element of Jexl's lexer: a string, a boolean, an operator or punctuation, a name or
a number, tried in Jexl's order (so ``.5`` is ``.`` then ``5``, as in Jexl)."""
_NUMBER: Final = re.compile(r"(?:[0-9]*\.[0-9]+|[0-9]+)\Z")
_NAME: Final = re.compile(
    r"[A-Za-z_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]"
    r"[A-Za-z0-9_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]*\Z"
)
_KINDS: Final = {
    ".": "dot",
    "[": "openBracket",
    "]": "closeBracket",
    "|": "pipe",
    "{": "openCurl",
    "}": "closeCurl",
    ":": "colon",
    ",": "comma",
    "(": "openParen",
    ")": "closeParen",
    "?": "question",
    "!": "unaryOp",
    **dict.fromkeys(
        ("+", "-", "*", "/", "//", "%", "^", "==", "!=", ">", ">=", "<", "<=", "&&", "||", "in"),
        "binaryOp",
    ),
}
"""Jexl's name for each kind of token (its grammar's element types)."""
_SIGN_ONLY: Final = frozenset({"MINUS", "NUMBER"})
"""What Lark expects after a ``-`` in front of an operand: more signs, or the number."""


def element_at(text: str, position: int) -> str:
    """The element of Jexl's lexer starting at ``position``: a token, or the run of
    characters no token starts with (which Jexl reports as an invalid token)."""
    found = _ELEMENT.match(text, position)
    if found:
        return found.group()
    end = position + 1
    while end < len(text) and text[end] not in JS_WHITESPACE and not _ELEMENT.match(text, end):
        end += 1
    return text[position:end]


def kind(element: str) -> str | None:
    """Jexl's name for the kind of token ``element`` is; ``None`` if it is not a token."""
    if element[:1] in ("'", '"') or _NUMBER.match(element) or element in ("true", "false"):
        return "literal"
    if element in _KINDS:
        return _KINDS[element]
    return "identifier" if _NAME.match(element) else None


def after_sign(expected: Collection[str]) -> bool:
    """Whether Lark stopped after a ``-`` in front of an operand (only a number may follow,
    which is where Jexl's lexer folds the sign into the next element)."""
    return bool(expected) and set(expected) <= _SIGN_ONLY


def invalid(text: str, position: int, *, signed: bool) -> str:
    """Jexl's message for the element at ``position`` that is not a token (``signed``: a
    ``-`` in front of an operand precedes it, and is part of it, as in Jexl)."""
    element = shown(element_at(text, position))
    return f"Error: Invalid expression token: {'-' if signed else ''}{element}"


def unexpected(text: str, position: int) -> str:
    """Jexl's message for the token at ``position`` of ``text``, where none is allowed."""
    start, stop = len(text) - len(text.lstrip(JS_WHITESPACE)), len(text.rstrip(JS_WHITESPACE))
    element = element_at(text, position)
    name = kind(element)
    if name is None:
        return invalid(text, position, signed=False)
    end = position + len(element)
    while end < stop and text[end] in JS_WHITESPACE:  # Jexl keeps the white space after a token
        end += 1
    raw = shown(text[position:end])
    return f"Error: Token {raw} ({name}) unexpected in expression: {shown(text[start:end])}"


def unexpected_end(text: str, *, signed: bool) -> str:
    """Jexl's message for an expression that ends too early (``signed``: after a ``-`` in
    front of an operand, which Jexl then reads as a binary operator)."""
    expression = shown(text.strip(JS_WHITESPACE))
    if signed:
        return f"Error: Token - (binaryOp) unexpected in expression: {expression}"
    return f"Error: Unexpected end of expression: {expression}"
