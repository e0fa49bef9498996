"""Parsing Jexl expression text into a syntax tree, in time linear in its tokens.

The grammar is ``grammar.lark`` next to this module. Lark's LALR parser reduces every operand
through each of the grammar's nine precedence levels, and spends about 35 microseconds per
element of an array literal: 70 to 140 ms for an expression at the length limit, most of the
time the promise allows. So expressions are parsed by a recursive-descent parser written for
this grammar (precedence climbing for the binary operators), which builds exactly the tree
Lark builds (the tests compare the two on generated expressions) several times faster. Lark
remains the reference: an expression this parser refuses is parsed by Lark again, to find
where the syntax error is, which is then worded as Jexl words it (see :func:`lark_parse`
and :mod:`~refluxo.expressions.syntax`); an expression
cannot hold more than one syntax error that counts, so this happens at most once per
evaluation that fails.

Recursion: the parser recurses once per nesting level (parentheses, brackets, braces,
ternary branches); unary operators, binary operators and postfix chains are loops. It stops
as soon as nesting passes :data:`~refluxo.expressions.limits.MAX_NESTING_DEPTH` (each level
is at least one level of the tree), so Python's recursion limit is never approached, and the
tree's depth is then checked with an explicit stack before the compiler (which recurses once
per level) ever sees it.

Parsing is work like any other: :func:`parse` charges the current evaluation's meter
(:mod:`~refluxo.expressions.budget`) :func:`parse_cost` before building the tree, once it
has counted the tokens (counting is one regular-expression pass in C).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from refluxo.expressions import syntax
from refluxo.expressions.budget import meter
from refluxo.expressions.failures import Failure, LimitFailure
from refluxo.expressions.limits import MAX_EXPRESSION_LENGTH, MAX_NESTING_DEPTH
from refluxo.expressions.numeric import JS_WHITESPACE

LIST_RULES: Final = frozenset({"arguments", "pairs", "pair"})
"""Grammar rules that only group their parent's operands: they add no nesting level."""

PARSE_TOKEN_COST: Final = 32
"""Operations charged per token parsed: tokenizing, building the tree, checking it and
compiling it take 1 to 3 microseconds a token (an array literal of negations being the
slowest), where an operation stands for about 0.1."""
PARSE_COST: Final = 150
"""Operations charged per expression parsed, besides its tokens: compiling even ``[0]``
takes 10 to 15 microseconds (the parser's calls, the compiled closures, the caches, and in
a template its slicing)."""


def parse_cost(tokens: int) -> int:
    """What parsing (and compiling) an expression of ``tokens`` tokens is charged."""
    return PARSE_COST + PARSE_TOKEN_COST * tokens


# --- tokens -------------------------------------------------------------------------------

# One token per match, after optional white space (JavaScript's, as Jexl's lexer reads it:
# ``%ignore`` in the grammar): a name, a number, a string, an operator or punctuation, else
# one character no token starts with (which makes the expression invalid). Trailing white
# space matches nothing.
_SPACE: Final = re.escape(JS_WHITESPACE)
_TOKENS: Final = re.compile(
    rf"""[{_SPACE}]*(
        [A-Za-z_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]
        [A-Za-z0-9_$\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0410-\u044F]*
      | [0-9]+(?:\.[0-9]+)?
      | "(?:\\"|[^"])*"|'(?:\\'|[^'])*'|["']
      | //|==|!=|<=|>=|&&|\|\||[-+*/%^<>!.\[\]|(){{}}?:,]
      | [^{_SPACE}]
    )""",
    re.VERBOSE | re.DOTALL,
)
_NAME_START: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$"
    + "".join(map(chr, (*range(0xC0, 0xD7), *range(0xD8, 0xF7), *range(0xF8, 0x100))))
    + "".join(map(chr, range(0x410, 0x450)))
)
"""What a name starts with, as in Jexl: an ASCII letter, ``_``, ``$``, a Latin-1 letter
(U+00C0-U+00FF but the multiplication and division signs) or a basic Cyrillic one
(U+0410-U+044F)."""
_DIGITS: Final = frozenset("0123456789")
_QUOTES: Final = frozenset("'\"")
_END: Final = ""
"""The token after the last one."""

_BINARY: Final[dict[str, tuple[int, str]]] = {
    "&&": (1, "and_"),
    "||": (1, "or_"),
    "==": (2, "eq"),
    "!=": (2, "ne"),
    "<": (2, "lt"),
    "<=": (2, "le"),
    ">": (2, "gt"),
    ">=": (2, "ge"),
    "in": (2, "in_"),  # only where an operator is expected: elsewhere `in` is a name
    "+": (3, "add"),
    "-": (3, "sub"),
    "*": (4, "mul"),
    "/": (4, "div"),
    "//": (4, "floordiv"),
    "%": (5, "mod"),  # as tight as `^` in Jexl: `2 * 3 % 4` is `2 * (3 % 4)`
    "^": (5, "pow"),
}
"""Binary operators: precedence (higher binds tighter; all are left-associative, as in Jexl)
and rule. The grammar's right operand of ``^`` and ``%`` is a ``unary``, which is what the
highest precedence gives."""
_UNARY: Final = {"!": "not_"}
_KEYWORDS: Final = {"true": "true", "false": "false", "null": "null"}


_tree: Final[Callable[[str, list[Any]], Tree[Token]]] = Tree
"""Lark's tree class, typed for the placeholders (``None``) it holds for empty ``[ ]``."""
_token: Final[Callable[[str, str], Token]] = getattr(Token, "_future_new", Token)
"""Lark's token constructor without its check for a deprecated keyword: a third of the
time of ``Token(type, value)``, which calls it."""


class _Refused(Exception):
    """The tokens are not an expression of the grammar (Lark says why)."""


class _TooDeep(Exception):
    """The expression nests deeper than the limit (so its tree does too)."""


class _Parser:
    """Recursive descent over the token list; each method returns the rule's tree, as Lark
    builds it (``?`` rules inlined, anonymous tokens dropped, ``[ ]`` as ``None``)."""

    __slots__ = ("depth", "index", "tokens")

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def expect(self, token: str) -> None:
        if self.tokens[self.index] != token:
            raise _Refused
        self.index += 1

    def nested(self) -> Tree[Token]:
        """An ``expr`` one nesting level deeper."""
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise _TooDeep
        tree = self.expr()
        self.depth -= 1
        return tree

    def expr(self) -> Tree[Token]:
        """``expr``: a ``logical``, or a ternary (right-associative) on one."""
        test = self.binary()
        if self.tokens[self.index] != "?":
            return test
        self.index += 1
        if self.tokens[self.index] == ":":
            self.index += 1
            return _tree("elvis", [test, self.nested()])
        consequent = self.nested()
        self.expect(":")
        return _tree("conditional", [test, consequent, self.nested()])

    def binary(self) -> Tree[Token]:
        """Unary operands joined by binary operators (``logical`` down to ``power``), with
        an explicit operator stack: every operator is left-associative, and one of equal or
        higher precedence on the stack is applied before a new one is pushed."""
        tokens = self.tokens
        left = self.unary()
        operator = _BINARY.get(tokens[self.index])
        if operator is None:
            return left
        operands = [left]
        pending: list[tuple[int, str]] = []
        while operator is not None:
            self.index += 1
            precedence = operator[0]
            while pending and pending[-1][0] >= precedence:
                right = operands.pop()
                operands[-1] = _tree(pending.pop()[1], [operands[-1], right])
            pending.append(operator)
            operands.append(self.unary())
            operator = _BINARY.get(tokens[self.index])
        while pending:
            right = operands.pop()
            operands[-1] = _tree(pending.pop()[1], [operands[-1], right])
        return operands[0]

    def unary(self) -> Tree[Token]:
        """``!`` prefixes (a loop, not recursion), then a postfix chain."""
        tokens = self.tokens
        prefixes: list[str] = []
        while tokens[self.index] in _UNARY:
            prefixes.append(_UNARY[tokens[self.index]])
            self.index += 1
        tree = self.postfix(self.primary())
        for rule in reversed(prefixes):
            tree = _tree(rule, [tree])
        return tree

    def postfix(self, tree: Tree[Token]) -> Tree[Token]:
        """``.name``, ``[expr]``, ``|name`` and ``|name(arguments)`` after an operand."""
        tokens = self.tokens
        while True:
            token = tokens[self.index]
            if token == ".":
                tree = _tree("member", [tree, self.name(self.index + 1)])
            elif token == "[":
                self.index += 1
                key = self.nested()
                self.expect("]")
                tree = _tree("index", [tree, key])
            elif token == "|":
                name = self.name(self.index + 1)
                if tokens[self.index] == "(":
                    tree = _tree("transform", [tree, name, self.arguments(")")])
                else:
                    tree = _tree("transform", [tree, name])
            else:
                return tree

    def name(self, index: int) -> Token:
        """The identifier at ``index`` (keywords included: ``a.true``, ``a.in``)."""
        token = self.tokens[index]
        if token[:1] not in _NAME_START:
            raise _Refused
        self.index = index + 1
        return _token("NAME", token)

    def primary(self) -> Tree[Token]:
        tokens = self.tokens
        token = tokens[self.index]
        first = token[:1]
        if first in _NAME_START:
            self.index += 1
            keyword = _KEYWORDS.get(token)
            if keyword is not None:
                return _tree(keyword, [])
            if tokens[self.index] == "(":
                return _tree("call", [_token("NAME", token), self.arguments(")")])
            return _tree("identifier", [_token("NAME", token)])
        if first in _DIGITS:  # `.5` is `.` then `5`, as in Jexl: not a number
            self.index += 1
            return _tree("number", [_token("NUMBER", token)])
        if first in _QUOTES:  # a string, or a lone quote: the empty string, as in Jexl
            self.index += 1
            return _tree("string", [_token("STRING", token)])
        if token == "-":  # signs (one or more, as Jexl folds them) of a number
            index = self.index + 1
            while tokens[index] == "-":
                index += 1
            number = tokens[index]
            if number[:1] not in _DIGITS:
                raise _Refused
            self.index = index + 1
            return _tree("negative", [_token("NUMBER", number)])
        if token == ".":
            return _tree("relative", [self.name(self.index + 1)])
        if token == "[":
            return _tree("array", [self.arguments("]")])
        if token == "{":
            return _tree("object", [self.pairs()])
        if token == "(":
            self.index += 1
            tree = _tree("group", [self.nested()])
            self.expect(")")
            return tree
        raise _Refused

    def arguments(self, closing: str) -> Tree[Token] | None:
        """``[arguments]`` between the opening token at the current index and ``closing``."""
        self.index += 1
        if self.tokens[self.index] == closing:
            self.index += 1
            return None
        items = [self.nested()]
        while self.tokens[self.index] == ",":
            self.index += 1
            items.append(self.nested())
        self.expect(closing)
        return _tree("arguments", items)

    def pairs(self) -> Tree[Token] | None:
        """``[pairs]`` between ``{`` (at the current index) and ``}``."""
        self.index += 1
        tokens = self.tokens
        if tokens[self.index] == "}":
            self.index += 1
            return None
        items: list[Tree[Token]] = []
        while True:
            token = tokens[self.index]
            first = token[:1]
            if first in _NAME_START:
                key = _token("NAME", token)
            elif first in _QUOTES:
                key = _token("STRING", token)
            else:
                raise _Refused
            self.index += 1
            self.expect(":")
            items.append(_tree("pair", [key, self.nested()]))
            if tokens[self.index] != ",":
                break
            self.index += 1
        self.expect("}")
        return _tree("pairs", items)


def tokenize(text: str) -> list[str]:
    """The tokens of ``text`` (a character no token starts with is a token of its own)."""
    return _TOKENS.findall(text)


def parse(text: str) -> tuple[Tree[Token], int]:
    """Parse expression ``text``: its tree, and the :func:`parse_cost` charged to the
    current meter (before building the tree). Raise :class:`Failure` naming the offending
    position if it is not an expression.

    Raises :class:`LimitFailure` when the text is longer than :data:`MAX_EXPRESSION_LENGTH`,
    when the meter's work budget cannot pay the parse, or when the expression nests deeper
    than :data:`MAX_NESTING_DEPTH` (as soon as the parser reaches that depth: a syntax
    error further on is then not reported).
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise LimitFailure(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    tokens = tokenize(text)
    cost = parse_cost(len(tokens))
    meter().spend(cost)
    count = len(tokens)
    tree = _descend(tokens)
    if tree is None:
        tree = lark_parse(text)  # raises the syntax error, in Lark's words
    if count > MAX_NESTING_DEPTH:  # each level of the tree holds a token of its own
        check_depth(tree)
    return tree, cost


def descend(text: str) -> Tree[Token] | None:
    """The recursive-descent parser alone: Lark's tree for ``text``, or ``None`` where the
    text is not an expression. Raises :class:`LimitFailure` once the text nests deeper than
    :data:`MAX_NESTING_DEPTH` levels of parentheses, brackets, braces or ternaries."""
    return _descend(tokenize(text))


def _descend(tokens: list[str]) -> Tree[Token] | None:
    tokens.append(_END)
    parser = _Parser(tokens)
    try:
        tree = parser.expr()
    except _Refused:
        return None
    except _TooDeep:
        raise _too_deep() from None
    return tree if parser.index == len(tokens) - 1 else None


def _too_deep() -> LimitFailure:
    return LimitFailure(f"expression nests deeper than {MAX_NESTING_DEPTH} levels")


def check_depth(tree: Tree[Token]) -> None:
    """Raise :class:`LimitFailure` if ``tree`` nests deeper than :data:`MAX_NESTING_DEPTH`."""
    pending: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_NESTING_DEPTH:
            raise _too_deep()
        for child in node.children:
            if isinstance(child, Tree):
                pending.append((child, depth if child.data in LIST_RULES else depth + 1))


# --- Lark: the reference grammar, and the wording of syntax errors --------------------------


@functools.cache
def jexl_parser() -> Lark:
    """Lark's parser for ``grammar.lark``, built once, on first use (75 to 120 ms)."""
    grammar = resources.files("refluxo.expressions").joinpath("grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=True)


def lark_parse(text: str) -> Tree[Token]:
    """Lark's tree for ``text``, or :class:`Failure` saying why it is not an expression,
    in Jexl's words (see :mod:`~refluxo.expressions.syntax`); the reason is cached, since
    a workflow's invalid expression fails every time it runs."""
    reason = _syntax_error(text)
    if reason is None:  # pragma: no cover - the parsers accept the same language
        return jexl_parser().parse(text)
    raise Failure(reason)


@functools.lru_cache(maxsize=256)
def _syntax_error(text: str) -> str | None:
    try:
        jexl_parser().parse(text)
    except UnexpectedInput as error:
        return _describe(text, error)
    return None  # pragma: no cover - the parsers accept the same language


def _describe(text: str, error: UnexpectedInput) -> str:
    """Jexl's wording for a Lark syntax error in ``text``."""
    if isinstance(error, UnexpectedCharacters):
        signed = syntax.after_sign(error.allowed or ())
        return syntax.invalid(text, error.pos_in_stream or 0, signed=signed)
    if isinstance(error, UnexpectedEOF):
        return syntax.unexpected_end(text, signed=syntax.after_sign(error.expected))
    if isinstance(error, UnexpectedToken):
        signed = syntax.after_sign(error.expected)
        if error.token.type == "$END":
            return syntax.unexpected_end(text, signed=signed)
        if signed:
            return syntax.invalid(text, error.token.start_pos, signed=True)
        return syntax.unexpected(text, error.token.start_pos)
    return str(error)  # pragma: no cover - Lark raises only the three kinds above
