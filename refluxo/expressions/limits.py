"""The bounds every expression runs within, and the error raised when one is exceeded.

Expressions come from workflow definitions, which may be written by people the host does not
fully trust, and they read data that callers supply (a run's input reaches expressions as
``nodes.<start>.output``). Each bound below keeps one evaluation's cost bounded whatever the
expression and whatever the data: parsing is linear in the expression's tokens, compiling
and evaluating stay iterative or shallowly recursive, parsing and every loop an expression
can start spend from a work budget (:data:`MAX_OPERATIONS`) and everything it builds spends
from a size budget (:data:`MAX_BUILT_SIZE`). With 1 MiB of data and expressions up to the
length limit, the templates of one node's input finish or fail within about 100 ms and
50 MB.

Both budgets belong to one :class:`~refluxo.expressions.Scope`: the templates of one node's
input, which :class:`~refluxo.expressions.JexlTransformEngine` evaluates with one scope,
share them, so a node holding thousands of expressions cannot multiply the bound.
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

Looking a primitive up in an array (``'a' in list``) is a plain scan, not counted here
(it is charged to the work budget, as every comparison is: the work budget usually ends a
long comparison first).
"""

MAX_OPERATIONS: Final = 400_000
"""The work budget of one scope, in operations.

An operation stands for a tenth to a quarter of a microsecond of CPU on a small server:

* parsing and compiling an expression is 150 operations and 32 per token
  (:data:`~refluxo.expressions.parser.PARSE_COST`,
  :data:`~refluxo.expressions.parser.PARSE_TOKEN_COST`), charged by
  :func:`~refluxo.expressions.template.template_in` for each template of a node's input
  (and by ``evaluate`` and ``render``) whether or not the expression is cached: before the
  tree is built when it is parsed, so a node cannot make a step parse more than the budget
  pays for, and the same charge from the cache, so whether an evaluation fits its budget
  never depends on what the cache holds;
* evaluating one node of an expression's syntax tree is one operation for a literal, a
  name or a logical operator, two for ``.name``, four for ``[key]``, five for an operator
  that converts its operands (``+``, ``<``, ``==``, ``in``...), eight for ``^`` and for a
  call, two more per element of an array or object literal or of a call's arguments;
  an expression is charged its whole tree when it starts, and a filter
  ``items[predicate]`` its predicate's tree (plus three) once per item, before it loops;
* each element a membership test (``in`` on an array) scans is one operation (four when
  looking for an array or object); each value a structural comparison visits is four, and
  each array or object it opens twenty more, charged as it visits them; each element of an
  array converted to a
  string is four (sixteen more unless a string or an integer); each record of a node's
  ``all`` built is eight;
* reading a string (comparing, searching or converting it to a number) costs one operation
  per :data:`CHARACTERS_PER_OPERATION` characters;
* returning a container costs eight operations and a quarter per value in it when it
  holds only JSON scalars (checked in C; another quarter if it holds numbers, which must be
  finite), and six per entry otherwise (the result is checked to hold JSON values only, see
  :mod:`~refluxo.expressions.results`).

The weights follow measured costs, so that the whole budget takes about the same time
whatever the expression spends it on.

Where the work depends on the data, charges are upper bounds taken before the work is
done (both branches of ``a ? b : c`` are charged, a filter before it loops, a scan or a
conversion before it starts) or as it is done (a structural comparison, value by value), so
an evaluation fails before doing the work that would exceed the budget.
"""

CHARACTERS_PER_OPERATION: Final = 16
"""Characters of a string read for one operation (see :data:`MAX_OPERATIONS`)."""

MAX_BUILT_SIZE: Final = 4_000_000
"""The size budget of one scope: characters of every string plus elements of every array
and object an evaluation builds, whether or not they are kept.

Strings, arrays and objects read from data are shared, never copied, and cost nothing.
"""

CACHE_SIZE: Final = 4_096
"""Compiled expressions, and separately parsed templates, kept in their LRU caches."""


class ExpressionLimitError(ExpressionError, LimitExceededError):
    """An expression or its result exceeded one of the bounds in this module.

    It is both an :class:`~refluxo.errors.ExpressionError` (so callers handling expression
    failures see it) and a :class:`~refluxo.errors.LimitExceededError`.
    """
