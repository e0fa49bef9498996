"""The transform engine that evaluates ``{{ }}`` expressions in node input.

The Python counterpart of Refluxo's ``JexlEngine``: before a node runs, every string in its
input is read as a template (see :mod:`~refluxo.expressions.template`) with three variables:

* ``nodes``: earlier results by node id (``nodes.fetch.last.data``; see
  :mod:`~refluxo.expressions.views`), read lazily from the context;
* ``input``: the node's input as it was before this transform;
* ``globals``: the run's globals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from refluxo.context import Context
from refluxo.expressions.evaluator import Registry, Scope, compile_in
from refluxo.expressions.jsvalues import (
    ARRAY,
    OBJECT,
    STRING,
    UNDEFINED,
    array_items,
    kind,
    object_items,
)
from refluxo.expressions.limits import MAX_DATA_DEPTH, ExpressionLimitError
from refluxo.expressions.results import OUTCOME
from refluxo.expressions.template import template_in
from refluxo.expressions.views import NodesView
from refluxo.transform import TransformEngine

_NAME: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


class JexlTransformEngine(TransformEngine):
    """Evaluates Jexl ``{{ }}`` templates in node input, as Refluxo's ``JexlEngine`` does.

    Args:
        transforms: callables usable as ``value|name(arg, ...)``, called as
            ``function(value, arg, ...)``.
        functions: callables usable as ``name(arg, ...)``.

    These registered callables are the only code an expression can run. They must be
    synchronous; ``undefined`` reaches them as ``None``.
    """

    def __init__(
        self,
        *,
        transforms: Registry | None = None,
        functions: Registry | None = None,
    ) -> None:
        self._transforms: dict[str, Callable[..., Any]] = {}
        self._functions: dict[str, Callable[..., Any]] = {}
        for name, function in (transforms or {}).items():
            self.add_transform(name, function)
        for name, function in (functions or {}).items():
            self.add_function(name, function)

    @property
    def transforms(self) -> Mapping[str, Callable[..., Any]]:
        """The registered transforms (read-only)."""
        return MappingProxyType(self._transforms)

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """The registered functions (read-only)."""
        return MappingProxyType(self._functions)

    def add_transform(self, name: str, function: Callable[..., Any]) -> None:
        """Register ``function`` as the transform ``value|name``."""
        self._transforms[_checked_name(name, function)] = function

    def add_function(self, name: str, function: Callable[..., Any]) -> None:
        """Register ``function`` as the function ``name(...)``."""
        self._functions[_checked_name(name, function)] = function

    def scope(self, context: Mapping[str, Any] | None, input: Any, globals: Any = None) -> Scope:
        """The variables ``transform`` evaluates with: ``nodes``, ``input``, ``globals``
        (``undefined`` when there are none, as in Refluxo, whose ``globals`` is optional)."""
        nodes = NodesView(context if context is not None else {})
        shared = UNDEFINED if globals is None else globals
        variables = {"nodes": nodes, "input": input, "globals": shared}
        return Scope(variables, self._transforms, self._functions)

    def transform(self, input: Any, context: Context, globals: Any = None) -> Any:
        """``input`` with every template string evaluated, in new dicts and lists.

        ``input`` itself is never modified. Every template of ``input`` is evaluated with one
        scope, so they share one work budget and one size budget: a node cannot multiply
        the bound by holding many expressions. Raises ``ExpressionError`` for an invalid or
        failing expression, and ``ExpressionLimitError`` for an exceeded budget or input
        containers nested deeper than :data:`~refluxo.expressions.limits.MAX_DATA_DEPTH`;
        a :class:`~refluxo.errors.TransientError` from the store passes through.
        """
        return resolve(input, self.scope(context, input, globals))

    def evaluate(self, expression: str, scope: Mapping[str, Any] | None = None) -> Any:
        """Evaluate one expression (no ``{{ }}``) with this engine's callables."""
        root = Scope(scope, transforms=self._transforms, functions=self._functions)
        return compile_in(root, expression).evaluate(root)

    def render(self, template: str, scope: Mapping[str, Any] | None = None) -> Any:
        """Render one template string with this engine's callables."""
        if "{{" not in template:
            return template
        root = Scope(scope, transforms=self._transforms, functions=self._functions)
        return template_in(root, template)(root)


def _checked_name(name: str, function: Callable[..., Any]) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Jexl identifier")
    if not callable(function):
        raise TypeError(f"{name!r} must be registered with a callable")
    return name


def resolve(value: Any, scope: Scope) -> Any:
    """``value`` with every template string evaluated with ``scope``, in new dicts and
    lists: what :meth:`JexlTransformEngine.transform` does with the scope it makes. Each
    template is charged its parsing (see :func:`~refluxo.expressions.template.template_in`)
    and its evaluation to the scope's budgets.

    A dict entry whose template is ``undefined`` (``{"val": "{{ nodes.nope.x }}"}``) is left
    out, as Refluxo's transform engine leaves it ``undefined`` and ``JSON.stringify`` then
    drops it: the executor's ``data.get("val")`` is ``None`` and a stored output holds no
    ``val`` key. In a list it stays a slot, ``None`` (JSON's ``null``), as there.
    """
    resolved = _resolve(value, scope, 0)
    return None if resolved is _LEFT_OUT else resolved


_LEFT_OUT: Final = object()
"""What :func:`_resolve` gives for a template that is ``undefined``."""


def _rendered(text: str, scope: Scope) -> Any:
    """Template ``text`` rendered, or :data:`_LEFT_OUT` when it is ``undefined``."""
    OUTCOME.undefined = False
    rendered = template_in(scope, text)(scope)
    return _LEFT_OUT if rendered is None and OUTCOME.undefined else rendered


def _resolve(value: Any, scope: Scope, depth: int) -> Any:
    """Evaluate the templates in ``value``: strings rendered (:data:`_LEFT_OUT` when
    ``undefined``), containers rebuilt."""
    if type(value) is str:
        return _rendered(value, scope) if "{{" in value else value
    found = kind(value)
    if found is OBJECT or found is ARRAY:
        if depth >= MAX_DATA_DEPTH:
            raise ExpressionLimitError(
                f"node input nests deeper than {MAX_DATA_DEPTH} levels of dicts and lists"
            )
        if found is OBJECT:
            resolved: dict[Any, Any] = {}
            for key, item in object_items(value):
                item = _resolve(item, scope, depth + 1)
                if item is not _LEFT_OUT:  # undefined: left out, as JSON.stringify does
                    resolved[key] = item
            return resolved
        return [
            None
            if (resolved_item := _resolve(item, scope, depth + 1)) is _LEFT_OUT
            else resolved_item
            for item in array_items(value)
        ]
    if found is STRING:
        text = str.__str__(value)
        return _rendered(text, scope) if "{{" in text else value
    return value
