"""The bounds every expression runs within, and the error raised when one is exceeded.

Expressions come from workflow definitions, which may be written by people the host does not
fully trust. Each bound below keeps one evaluation's cost proportional to the expression's
own size, never to anything an author can amplify: parsing, compiling and evaluating stay
iterative or shallowly recursive, and no result can grow without bound.
"""

from __future__ import annotations

from typing import Final

from refluxo.errors import ExpressionError, LimitExceededError

MAX_EXPRESSION_LENGTH: Final = 4_096
"""Characters in one expression (the text between ``{{`` and ``}}``)."""

MAX_NESTING_DEPTH: Final = 64
"""Nested operators, parentheses, literals and calls in one expression.

Checked on the parse tree with an explicit stack before compiling, so compilation and
evaluation (which recurse once per level) can never hit Python's recursion limit.
"""

MAX_STRING_LENGTH: Final = 1_000_000
"""Characters in a string an expression builds (concatenation, interpolation, conversion)."""

MAX_DATA_DEPTH: Final = 64
"""Nested containers walked in node input, or converted to a string by an expression."""

MAX_COMPARISON_STEPS: Final = 100_000
"""Values visited by one structural comparison (``==`` or ``in`` between containers).

Looking a primitive up in an array (``'a' in list``) is a plain scan and not counted.
"""

CACHE_SIZE: Final = 4_096
"""Compiled expressions, and separately parsed templates, kept in their LRU caches."""


class ExpressionLimitError(ExpressionError, LimitExceededError):
    """An expression or its result exceeded one of the bounds in this module.

    It is both an :class:`~refluxo.errors.ExpressionError` (so callers handling expression
    failures see it) and a :class:`~refluxo.errors.LimitExceededError`.
    """
