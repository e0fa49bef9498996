"""Compiling a Jexl syntax tree into Python closures, and evaluating them.

Each expression is parsed and compiled once (then cached): every tree node becomes a closure
``run(scope, relative) -> value``, so evaluation is a handful of direct calls with no tree
walking, no dispatch on node types and no re-parsing. ``scope`` is the root
:class:`Scope`; ``relative`` is what a relative identifier (``.price`` inside
``items[.price > 10]``) reads: the current element inside a filter, the root scope outside
one, as in Jexl.

Values follow JavaScript (see :mod:`~refluxo.expressions.jsvalues`) and are read only
through the sandboxed accessors of :mod:`~refluxo.expressions.access`. The only callables
an expression can reach are the transforms and functions registered on its scope, and only
JSON values come out (see :mod:`~refluxo.expressions.results`).

Work is charged to the scope's :class:`~refluxo.expressions.budget.Meter` by weight, not
call by call, so the closures stay as fast as they were: an expression's weight is the sum
of its syntax tree's node weights (:func:`weight`), an upper bound on what the closures of
one evaluation do outside filters. Evaluating it charges its weight once; a filter charges
its predicate's weight once per item before it loops (a nested filter charges its own items
when it runs). Jexl has no other loop, so the charges bound every closure call; what an
operator does in proportion to its operands (a long string, a large array) it charges
itself (see :mod:`~refluxo.expressions.jsvalues`).

One module on purpose, though over 400 lines: one compiler, one closure factory per
grammar rule; splitting rule by rule would scatter a single recursive function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TypeAlias, TypeVar

from lark import Token, Tree

from refluxo.errors import ExpressionError, TransientError
from refluxo.expressions import equality, jsvalues
from refluxo.expressions.access import (
    PLAIN_TYPES,
    export,
    get_item,
    get_property,
    property_key,
    sanitize,
)
from refluxo.expressions.budget import UNMETERED, Meter, enter, leave, meter
from refluxo.expressions.failures import Failure, expression_error, from_failure
from refluxo.expressions.jsvalues import UNDEFINED, display, int_to_string, truthy
from refluxo.expressions.limits import CACHE_SIZE
from refluxo.expressions.numeric import JS_WHITESPACE
from refluxo.expressions.parser import LIST_RULES, parse
from refluxo.expressions.results import JSON_LEAVES, JSON_SCALARS, to_json
from refluxo.expressions.views import NodesView, NodeView
from refluxo.frozen import FrozenDict, FrozenList

Registry: TypeAlias = Mapping[str, Callable[..., Any]]
"""Named callables an expression may call: transforms (``x|name``) or functions."""

_EMPTY_REGISTRY: Final[Registry] = {}


class Scope(dict[str, Any]):
    """The root variables of an evaluation, with the callables it may use and its budget.

    Expressions read variables by name only; ``transforms`` and ``functions`` are reachable
    solely through the ``|name`` and ``name()`` syntax. ``meter`` holds the work and size
    budgets (:mod:`~refluxo.expressions.limits`) that every expression evaluated with this
    scope shares: make a new scope for each independent evaluation (the module functions
    and :class:`~refluxo.expressions.JexlTransformEngine` do: one per call, one per node
    input).
    """

    __slots__ = ("functions", "meter", "transforms")

    def __init__(
        self,
        variables: Mapping[str, Any] | None = None,
        /,
        transforms: Registry | None = None,
        functions: Registry | None = None,
    ) -> None:
        dict.__init__(self, variables or ())
        self.transforms: Registry = _EMPTY_REGISTRY if transforms is None else transforms
        self.functions: Registry = _EMPTY_REGISTRY if functions is None else functions
        self.meter = Meter()


Run: TypeAlias = Callable[[Scope, Any], Any]
"""A compiled expression node: ``run(scope, relative) -> value``."""


class CompiledExpression:
    """One parsed and compiled expression; evaluate it any number of times.

    Every failure raises :class:`~refluxo.errors.ExpressionError` (or its subclass
    :class:`~refluxo.expressions.limits.ExpressionLimitError`) with a message starting
    ``Jexl Error in [<expression>]: ``; a :class:`~refluxo.errors.TransientError` from a
    store read passes through untouched.
    """

    __slots__ = ("_run", "parse_cost", "text", "weight")

    def __init__(self, text: str, run: Run, weight: int = 1, parse_cost: int = 0) -> None:
        self.text = text
        self._run = run
        self.weight = weight
        """The syntax tree's weight: what one evaluation is charged before it starts."""
        self.parse_cost = parse_cost
        """What parsing and compiling the text is charged (see :func:`compile_in`)."""

    def evaluate(self, scope: Scope) -> Any:
        """The expression's value as a JSON value; ``None`` for ``undefined``."""
        meter = scope.meter
        token = enter(meter)
        try:
            meter.spend(self.weight)
            value = self._run(scope, scope)
            return value if type(value) in JSON_LEAVES else to_json(value, meter)
        except Failure as failure:
            raise from_failure(self.text, failure) from failure.__cause__
        except TransientError:
            raise  # a store read failed for a reason that may pass: retry the delivery
        except Exception as error:
            raise _unexpected(self.text, error) from error
        finally:
            leave(token)

    def display(self, scope: Scope) -> str:
        """The value as text interpolation shows it (JavaScript's ``String(value ?? "")``)."""
        meter = scope.meter
        token = enter(meter)
        try:
            meter.spend(self.weight)
            value = self._run(scope, scope)
            cls = type(value)
            if cls is str:
                return value  # type: ignore[no-any-return]
            if cls is int:
                return int_to_string(value)
            return display(value)
        except Failure as failure:
            raise from_failure(self.text, failure) from failure.__cause__
        except TransientError:
            raise  # a store read failed for a reason that may pass: retry the delivery
        except Exception as error:
            raise _unexpected(self.text, error) from error
        finally:
            leave(token)

    def __repr__(self) -> str:
        return f"CompiledExpression({self.text!r})"


def _unexpected(text: str, error: Exception) -> ExpressionError:
    return expression_error(text, f"{type(error).__name__}: {error}")


@functools.lru_cache(maxsize=CACHE_SIZE)
def compile_expression(text: str) -> CompiledExpression:
    """Parse and compile ``text`` (cached); raise ``ExpressionError`` if it is invalid.

    Empty or blank text is valid, but evaluating it fails as in Jexl (whose evaluator reads
    the type of the empty syntax tree, ``null``).
    """
    if not text.strip(JS_WHITESPACE):
        return CompiledExpression(text, _blank)
    try:
        tree, cost = parse(text)
        return CompiledExpression(text, _compile(tree), weight(tree), cost)
    except Failure as failure:
        raise from_failure(text, failure) from None


def compile_charged(text: str) -> CompiledExpression:
    """:func:`compile_expression`, its parse charged to the current meter whether or not it
    was cached: as it parses, or from :attr:`CompiledExpression.parse_cost` (what a
    template charges for each of its expressions as it compiles them)."""
    current = meter()
    if current is UNMETERED:
        return compile_expression(text)
    before = current.operations
    compiled = compile_expression(text)
    owed = compiled.parse_cost - int(before - current.operations)
    if owed > 0:
        try:
            current.spend(owed)
        except Failure as failure:
            raise from_failure(text, failure) from None
    return compiled


class _Parsed(Protocol):
    @property
    def parse_cost(self) -> int: ...


_Compiled = TypeVar("_Compiled", bound=_Parsed)


def charged(scope: Scope, text: str, compile: Callable[[str], _Compiled]) -> _Compiled:
    """``compile(text)`` (a cached compiler: :func:`compile_expression` or
    :func:`~refluxo.expressions.template.compile_template`), its parsing charged to
    ``scope``'s work budget: as it parses when the text is new to the cache (so a parse the
    budget cannot pay stops before the tree is built), else from the ``parse_cost`` the
    compiled value records. Either way the charge is the same: whether an evaluation fits
    its budget never depends on what the cache holds.
    """
    meter = scope.meter
    token = enter(meter)
    try:
        before = meter.operations
        try:
            compiled = compile(text)
        except ExpressionError:
            if meter.operations < 0:  # a parse the budget could not pay: say so as below
                raise from_failure(text, meter.work_failure()) from None
            raise
        owed = compiled.parse_cost - int(before - meter.operations)
        if owed > 0:
            meter.spend(owed)
        return compiled
    except Failure as failure:
        raise from_failure(text, failure) from None
    finally:
        leave(token)


def compile_in(scope: Scope, text: str) -> CompiledExpression:
    """:func:`compile_expression`, its parsing charged to ``scope`` (see :func:`charged`)."""
    return charged(scope, text, compile_expression)


def evaluate(
    expression: str,
    scope: Mapping[str, Any] | None = None,
    *,
    transforms: Registry | None = None,
    functions: Registry | None = None,
) -> Any:
    """Evaluate one Jexl ``expression`` against ``scope``'s variables."""
    root = Scope(scope, transforms=transforms, functions=functions)
    return compile_in(root, expression).evaluate(root)


def validate_expression(expression: str) -> tuple[bool, str | None]:
    """``(True, None)`` if ``expression`` (without ``{{ }}``) is valid, else
    ``(False, message)``. Empty and blank expressions are valid."""
    try:
        compile_expression(expression)
    except ExpressionError as error:
        return False, str(error)
    return True, None


# --- compiler ---------------------------------------------------------------------------

_Compiler: TypeAlias = Callable[[Tree[Token]], Run]
_DICT_TYPES: Final[frozenset[type[Any]]] = frozenset((dict, FrozenDict))
_ARRAY_TYPES: Final[frozenset[type[Any]]] = frozenset((list, FrozenList, tuple))
_VIEW_TYPES: Final[frozenset[type]] = frozenset({NodesView, NodeView})
_CONSTANT_RULES: Final = frozenset({"number", "negative", "string", "true", "false", "null"})


def _compile(node: Tree[Token]) -> Run:
    return _COMPILERS[str(node.data)](node)


_OPERATOR_WEIGHT: Final = 5
"""Operations charged per operator node: converting operands (``'2' * x``, ``1 < null``)
takes several steps of JavaScript's algorithms."""
_WEIGHTS: Final = {
    **dict.fromkeys(
        ("eq", "ne", "lt", "le", "gt", "ge", "in_", "add", "sub", "mul", "div", "floordiv"),
        _OPERATOR_WEIGHT,
    ),
    "mod": _OPERATOR_WEIGHT,
    "pow": 8,  # Math.pow's special cases around math.pow
    "member": 2,  # a lookup through a view, a mapping or a sequence
    "index": 4,  # the same, with JavaScript's conversion of the key
    "transform": 8,  # a call into registered code, its arguments and result checked
    "call": 8,
}
"""Operations charged per node of each rule; every other node costs one, and the list of
an array literal, an object literal or a call's arguments :data:`_ELEMENT_WEIGHT` more per
element (each is exported into the list)."""
_ELEMENT_WEIGHT: Final = 2


def weight(tree: Tree[Token]) -> int:
    """What evaluating ``tree`` once is charged: the weights of its nodes, a bound on the
    work its closures do besides the loops that charge their own."""
    total = 0
    pending = [tree]
    weights, lists, push = _WEIGHTS, LIST_RULES, pending.append
    while pending:
        node = pending.pop()
        rule, children = node.data, node.children
        total += weights.get(rule, 1)
        if rule in lists:
            total += _ELEMENT_WEIGHT * len(children)
        for child in children:
            if type(child) is Tree:
                push(child)
    return total


def _subtree(child: object) -> Tree[Token]:
    assert isinstance(child, Tree)
    return child


def _token(child: object) -> str:
    assert isinstance(child, Token)
    return str(child)


def _constant(value: Any) -> Run:
    def run(scope: Scope, relative: Any) -> Any:
        return value

    return run


def _constant_value(node: Tree[Token]) -> Any:
    """The value of a literal node (``number``, ``negative``, ``string``, ``true``,
    ``false``, ``null``)."""
    rule = node.data
    if rule == "number":
        return jsvalues.normalize(float(_token(node.children[0])))
    if rule == "negative":
        return jsvalues.normalize(-float(_token(node.children[0])))
    if rule == "string":
        return unquote(_token(node.children[0]))
    return {"true": True, "false": False, "null": None}[str(rule)]


def _blank(scope: Scope, relative: Any) -> Any:
    raise Failure("TypeError: Cannot read properties of null (reading 'type')")


def _literal(node: Tree[Token]) -> Run:
    return _constant(_constant_value(node))


def unquote(token: str) -> str:
    """A string literal's value, unescaped as Jexl's lexer does: every backslash before the
    literal's own quote is dropped, then the first ``\\\\`` (only the first) becomes one
    backslash; any other backslash stays as written (``'a\\nb'`` is four characters)."""
    quote, body = token[0], token[1:-1]
    if "\\" not in body:
        return body
    return body.replace("\\" + quote, quote).replace("\\\\", "\\", 1)


def _identifier(node: Tree[Token]) -> Run:
    name = _token(node.children[0])

    def run(scope: Scope, relative: Any) -> Any:
        value = scope.get(name, UNDEFINED)
        return value if type(value) in PLAIN_TYPES else sanitize(value)

    return run


_SEQUENCE_TYPES: Final[frozenset[type]] = frozenset((str, list, tuple))
_NO_PROPERTIES: Final[frozenset[type]] = frozenset((int, float, bool, type(None)))


def _relative(node: Tree[Token]) -> Run:
    """``.name``: the current filter item's ``name``. An identifier is never an index, so on
    an exact string, list or tuple only ``length`` exists (the fast paths give what
    :func:`~refluxo.expressions.access.get_item` gives, without its dispatch)."""
    name = _token(node.children[0])
    is_length = name == "length"

    def run(scope: Scope, relative: Any) -> Any:
        cls = type(relative)
        if cls in _DICT_TYPES:  # a filter over JSON objects
            value = relative.get(name, UNDEFINED)
            return value if type(value) in PLAIN_TYPES else sanitize(value)
        if cls in _SEQUENCE_TYPES:
            return len(relative) if is_length else UNDEFINED
        if cls in _NO_PROPERTIES or relative is UNDEFINED:
            return UNDEFINED
        return get_item(relative, name)

    return run


def _group(node: Tree[Token]) -> Run:
    return _compile(_subtree(node.children[0]))


def _path(node: Tree[Token]) -> Run:
    """A chain of ``.name`` and constant ``[key]`` accesses, compiled into one loop."""
    steps: list[tuple[str, bool, Any]] = []
    while True:
        if node.data == "member":
            name = _token(node.children[1])
            steps.append((name, True, name))
        elif node.data == "index" and _static_constant_key(node):
            key = _constant_value(_subtree(node.children[1]))
            steps.append((property_key(key), False, key))
        else:
            break
        node = _subtree(node.children[0])
    steps.reverse()
    chain = tuple(steps)
    if node.data == "identifier":
        root = _token(node.children[0])

        def run_from_scope(scope: Scope, relative: Any) -> Any:
            value = scope.get(root, UNDEFINED)
            for key, dot, raw in chain:
                cls = type(value)
                if cls in _DICT_TYPES:
                    value = value.get(key, UNDEFINED)
                elif cls in _VIEW_TYPES:
                    value = value.lookup(key)
                elif cls in _ARRAY_TYPES and type(raw) is int and not dot:
                    value = value[raw] if 0 <= raw < len(value) else UNDEFINED
                elif dot:
                    value = get_property(value, key)
                else:
                    value = get_item(value, raw)
            return value if type(value) in PLAIN_TYPES else sanitize(value)

        return run_from_scope
    base = _compile(node)

    def run(scope: Scope, relative: Any) -> Any:
        return _walk(chain, base(scope, relative))

    return run


def _walk(chain: tuple[tuple[str, bool, Any], ...], value: Any) -> Any:
    """Follow ``chain`` from ``value``: ``(key, is_dot, raw_key)`` steps."""
    for key, dot, raw in chain:
        cls = type(value)
        if cls in _DICT_TYPES:
            value = value.get(key, UNDEFINED)
        elif cls in _VIEW_TYPES:
            value = value.lookup(key)
        elif cls in _ARRAY_TYPES and type(raw) is int and not dot:
            value = value[raw] if 0 <= raw < len(value) else UNDEFINED
        elif dot:
            value = get_property(value, key)
        else:
            value = get_item(value, raw)
    return value if type(value) in PLAIN_TYPES else sanitize(value)


def _static_constant_key(node: Tree[Token]) -> bool:
    key = _subtree(node.children[1])
    return key.data in ("number", "string")


def _index(node: Tree[Token]) -> Run:
    if _static_constant_key(node):
        return _path(node)
    subject = _compile(_subtree(node.children[0]))
    expression = _subtree(node.children[1])
    key = _compile(expression)
    if _is_relative(expression):
        return _filter(subject, key, weight(expression))

    def run(scope: Scope, relative: Any) -> Any:
        return get_item(subject(scope, relative), key(scope, relative))

    return run


def _is_relative(expression: Tree[Token]) -> bool:
    """Whether a bracket expression is a filter: it reads a relative identifier outside
    any nested bracket (which would be a filter of its own)."""
    pending = [expression]
    while pending:
        node = pending.pop()
        if node.data == "relative":
            return True
        children = node.children[:1] if node.data == "index" else node.children
        pending.extend(child for child in children if isinstance(child, Tree))
    return False


_ITEM_COST: Final = 3
"""Operations charged per item a filter visits, besides its predicate: reading the item,
testing the predicate's value, keeping the item."""


def _filter(subject: Run, predicate: Run, cost: int) -> Run:
    """``subject[predicate]`` with relative identifiers: the elements for which the
    predicate is truthy. A non-array subject filters as a one-element array (``undefined``
    as an empty one). As in Jexl, whose relative context is ``element || context``, the
    relative identifiers of a falsy element (``null``, ``0``, ``""``...) read the root
    variables.

    Charged ``cost`` (the predicate's weight) plus :data:`_ITEM_COST` per item, before
    looping, and the kept list as values built."""

    def run(scope: Scope, relative: Any) -> list[Any]:
        items = subject(scope, relative)
        if items is UNDEFINED:
            return []
        array = jsvalues.kind(items) is jsvalues.ARRAY
        items = jsvalues.array_items(items) if array else [items]
        meter = scope.meter
        meter.spend(len(items) * (cost + _ITEM_COST))
        kept: list[Any] = []
        for item in items:
            element = sanitize(item)
            reads = element if type(element) in _DICT_TYPES or truthy(element) else scope
            if truthy(predicate(scope, reads)):
                kept.append(export(element))
        meter.build(len(kept))
        return kept

    return run


def _arguments(child: object) -> list[Run]:
    if child is None:
        return []
    return [_compile(_subtree(argument)) for argument in _subtree(child).children]


def _argument(value: Any) -> Any:
    return None if value is UNDEFINED else value


def _returned(value: Any, what: str) -> Any:
    """A registered callable's result; coroutines are refused (evaluation is synchronous)."""
    if type(value) in JSON_SCALARS:
        return value
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise Failure(f"{what} returned an awaitable; register a synchronous callable")
    return value


def _call_registered(what: str, function: Callable[..., Any], arguments: list[Any]) -> Any:
    try:
        result = function(*arguments)
    except (Failure, TransientError):
        raise
    except Exception as error:
        raise Failure(f"{what} raised {type(error).__name__}: {error}") from error
    return _returned(result, what)


def _transform(node: Tree[Token]) -> Run:
    subject = _compile(_subtree(node.children[0]))
    name = _token(node.children[1])
    arguments = _arguments(node.children[2] if len(node.children) > 2 else None)
    what = f"Transform {name}"

    def run(scope: Scope, relative: Any) -> Any:
        function = scope.transforms.get(name)
        if function is None:
            raise Failure(f"Error: {what} is not defined.")  # Jexl's wording
        values = [_argument(subject(scope, relative))]
        values.extend(_argument(argument(scope, relative)) for argument in arguments)
        return _call_registered(what, function, values)

    return run


def _call(node: Tree[Token]) -> Run:
    name = _token(node.children[0])
    arguments = _arguments(node.children[1])
    what = f"Function {name}"

    def run(scope: Scope, relative: Any) -> Any:
        function = scope.functions.get(name)
        if function is None:
            raise Failure(f"Error: Jexl {what} is not defined.")  # Jexl's wording
        values = [_argument(argument(scope, relative)) for argument in arguments]
        return _call_registered(what, function, values)

    return run


def _array(node: Tree[Token]) -> Run:
    children = node.children[0]
    if children is not None and all(
        _subtree(child).data in _CONSTANT_RULES for child in _subtree(children).children
    ):
        values = tuple(_constant_value(_subtree(child)) for child in _subtree(children).children)

        def run_constant(scope: Scope, relative: Any) -> list[Any]:
            scope.meter.build(len(values))
            return list(values)  # a new list each time: a transform may change it

        return run_constant
    elements = _arguments(children)

    def run(scope: Scope, relative: Any) -> list[Any]:
        scope.meter.build(len(elements))
        return [export(element(scope, relative)) for element in elements]

    return run


def _object(node: Tree[Token]) -> Run:
    entries: list[tuple[str, Run]] = []
    pairs = node.children[0]
    if pairs is not None:
        for pair in _subtree(pairs).children:
            key, value = _subtree(pair).children
            assert isinstance(key, Token)
            name = unquote(str(key)) if key.type == "STRING" else str(key)
            entries.append((name, _compile(_subtree(value))))

    def run(scope: Scope, relative: Any) -> dict[str, Any]:
        scope.meter.build(len(entries))
        return {name: export(value(scope, relative)) for name, value in entries}

    return run


def _conditional(node: Tree[Token]) -> Run:
    test, consequent, alternate = (_compile(_subtree(child)) for child in node.children)

    def run(scope: Scope, relative: Any) -> Any:
        if truthy(test(scope, relative)):
            return consequent(scope, relative)
        return alternate(scope, relative)

    return run


def _and(node: Tree[Token]) -> Run:
    left, right = (_compile(_subtree(child)) for child in node.children)

    def run(scope: Scope, relative: Any) -> Any:
        value = left(scope, relative)
        return right(scope, relative) if truthy(value) else value

    return run


def _or(node: Tree[Token]) -> Run:
    left, right = (_compile(_subtree(child)) for child in node.children)

    def run(scope: Scope, relative: Any) -> Any:
        value = left(scope, relative)
        return value if truthy(value) else right(scope, relative)

    return run


def _not(node: Tree[Token]) -> Run:
    operand = _compile(_subtree(node.children[0]))

    def run(scope: Scope, relative: Any) -> bool:
        return not truthy(operand(scope, relative))

    return run


def _not_equal(left: Any, right: Any) -> bool:
    return not equality.loose_equal(left, right)


def _binary(operator: Callable[[Any, Any], Any]) -> _Compiler:
    def compile_binary(node: Tree[Token]) -> Run:
        left_node, right_node = (_subtree(child) for child in node.children)
        left = _compile(left_node)
        if right_node.data in _CONSTANT_RULES:
            constant = _constant_value(right_node)

            def run_constant(scope: Scope, relative: Any) -> Any:
                return operator(left(scope, relative), constant)

            return run_constant
        right = _compile(right_node)

        def run(scope: Scope, relative: Any) -> Any:
            return operator(left(scope, relative), right(scope, relative))

        return run

    return compile_binary


_COMPILERS: Final[dict[str, _Compiler]] = {
    "number": _literal,
    "negative": _literal,
    "string": _literal,
    "true": _literal,
    "false": _literal,
    "null": _literal,
    "identifier": _identifier,
    "relative": _relative,
    "group": _group,
    "member": _path,
    "index": _index,
    "transform": _transform,
    "call": _call,
    "array": _array,
    "object": _object,
    "conditional": _conditional,
    "elvis": _or,  # `a ?: b` is `a || b`: the test when truthy, else the alternate
    "and_": _and,
    "or_": _or,
    "not_": _not,
    "eq": _binary(equality.loose_equal),
    "ne": _binary(_not_equal),
    "lt": _binary(jsvalues.less),
    "le": _binary(jsvalues.less_equal),
    "gt": _binary(jsvalues.greater),
    "ge": _binary(jsvalues.greater_equal),
    "in_": _binary(equality.contains),
    "add": _binary(jsvalues.add),
    "sub": _binary(jsvalues.subtract),
    "mul": _binary(jsvalues.multiply),
    "div": _binary(jsvalues.divide),
    "floordiv": _binary(jsvalues.floor_divide),
    "mod": _binary(jsvalues.remainder),
    "pow": _binary(jsvalues.power),
}
