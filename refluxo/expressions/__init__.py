"""Jexl expressions: ``{{ ... }}`` templates evaluated in node input.

A port of the expression support of Refluxo (``@refluxo/core``), which uses JavaScript
Jexl 2.x: Jexl's syntax, JavaScript's value semantics, and Refluxo's error messages,
``Jexl Error in [<expression as written>]: <JavaScript's String(error)>``: Jexl's wording
for syntax errors (see :mod:`~refluxo.expressions.syntax`), JavaScript's ``TypeError`` for
bracket access on ``undefined`` or ``null``. Templates are delimited as Refluxo delimits
them (see :mod:`~refluxo.expressions.template`). Register :class:`JexlTransformEngine`
with a :class:`~refluxo.WorkflowEngine`::

    WorkflowEngine(workflow, definitions, transform_engines=[JexlTransformEngine()])

and node data such as ``{"total": "{{ nodes.cart.last.data.price * 2 }}"}`` is evaluated
before the node runs.

Expressions are sandboxed: they read data only by key, index and ``length``, never a Python
attribute, and call only registered transforms and functions; what they return is always a
JSON value (see :mod:`~refluxo.expressions.results`). Every evaluation is bounded in time
and memory whatever the expression and the data (see :mod:`~refluxo.expressions.limits`):
numbers and templates are scanned in linear time, and a work budget and a size budget stop
any evaluation that would do or build too much with an
:class:`~refluxo.expressions.ExpressionLimitError` naming the limit.

Deliberate differences from JavaScript Jexl and Refluxo (the README's differences table
lists every one, with examples; in short):

* Python objects that are not JSON-like (functions, classes, model instances, mappings
  that are not dicts...) read as ``undefined``, and are left out of results as
  ``JSON.stringify`` leaves ``undefined`` out (``None`` in arrays); a result containing
  itself is an error;
* two arrays or objects compare (``==``, ``in``) structurally, not by identity;
* ``key in object`` tests for a key (Jexl returns false for objects);
* ``array.length`` is the array's length (Jexl reads the first element's ``length``);
* there is no negative zero (``-0`` is ``0``), and integers from Python data keep their
  exact value below 1e21 where JavaScript would round them past 2**53;
* strings compare by code point, not UTF-16 code unit;
* a ``{{ }}`` template may span lines;
* transforms and functions are synchronous;
* ``null`` is the JSON null (Jexl 2.3 reads it as a name, ``undefined``);
* a negative number may follow a comma (``[1, -1]``, which Jexl refuses);
* the grammar is Jexl's with small differences: string keys (``{'a': 1}``) and indexing
  a literal (``'ab'[0]``) are accepted, a few malformed expressions Jexl accepts are
  refused (``(1``, ``[1,]``, ``a ? b :``), and where Jexl's parser would stop elsewhere a
  syntax error may name another token;
* a string's ``length`` counts code points, not UTF-16 code units;
* ``undefined`` inside an array or object an expression builds is ``null``;
* JavaScript's object members (``constructor``, ``toString``...) are ordinary missing
  names, keywords may be names after a dot or as keys, ``(x)[0]`` indexes ``x``, and
  ``(!x).y`` is not read as ``!y``;
* an array used as an index reads nothing; a method call ``a.b(1)`` is a syntax error;
* the limits above fail a node where Jexl would go on (node data nested over 64 levels,
  expressions over 4,096 characters or 64 levels deep), and error texts quote at most 200
  characters of an expression.
"""

from __future__ import annotations

from refluxo.expressions.engine import JexlTransformEngine
from refluxo.expressions.evaluator import (
    CompiledExpression,
    Registry,
    Scope,
    compile_expression,
    evaluate,
    validate_expression,
)
from refluxo.expressions.limits import (
    CACHE_SIZE,
    CHARACTERS_PER_OPERATION,
    MAX_BUILT_SIZE,
    MAX_COMPARISON_STEPS,
    MAX_DATA_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    MAX_OPERATIONS,
    MAX_STRING_LENGTH,
    ExpressionLimitError,
)
from refluxo.expressions.template import compile_template, render, validate_template
from refluxo.expressions.views import NodesView, NodeView

__all__ = [
    "CACHE_SIZE",
    "CHARACTERS_PER_OPERATION",
    "MAX_BUILT_SIZE",
    "MAX_COMPARISON_STEPS",
    "MAX_DATA_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_NESTING_DEPTH",
    "MAX_OPERATIONS",
    "MAX_STRING_LENGTH",
    "CompiledExpression",
    "ExpressionLimitError",
    "JexlTransformEngine",
    "NodeView",
    "NodesView",
    "Registry",
    "Scope",
    "compile_expression",
    "compile_template",
    "evaluate",
    "render",
    "validate_expression",
    "validate_template",
]
