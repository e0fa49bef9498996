"""Expressions reach data only by key, index and length, and call only registered names."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refluxo import MemoryContext, NodeResult, SnapshotStatus
from refluxo.errors import ExpressionError
from refluxo.expressions import JexlTransformEngine, NodesView, evaluate, render
from tests.expressions.test_results import is_json

TOUCHED: list[str] = []
"""Every attribute read and special method call on a Tripwire, in order."""


class Tripwire:
    """An object that records any way Python code could look into it."""

    secret = "class attribute"

    def __init__(self) -> None:
        object.__setattr__(self, "data", {"x": 1})

    def __getattribute__(self, name: str) -> Any:
        TOUCHED.append(name)
        return object.__getattribute__(self, name)

    def __eq__(self, other: object) -> bool:
        TOUCHED.append("__eq__")
        return False

    def __hash__(self) -> int:
        TOUCHED.append("__hash__")
        return 0

    def __bool__(self) -> bool:
        TOUCHED.append("__bool__")
        return False

    def __str__(self) -> str:
        TOUCHED.append("__str__")
        return "tripwire"

    def __len__(self) -> int:
        TOUCHED.append("__len__")
        return 1

    def __iter__(self) -> Iterator[Any]:
        TOUCHED.append("__iter__")
        return iter([])

    def __getitem__(self, key: Any) -> Any:
        TOUCHED.append("__getitem__")
        return "item"

    def __call__(self, *args: Any) -> Any:
        TOUCHED.append("__call__")
        return "called"


class NoisyDict(dict[str, Any]):
    """A dict subclass whose overrides must never run (plain dict lookup is used)."""

    def __getattribute__(self, name: str) -> Any:
        TOUCHED.append(f"NoisyDict.{name}")
        return super().__getattribute__(name)

    def __getitem__(self, key: str) -> Any:
        TOUCHED.append("NoisyDict.__getitem__")
        return "overridden"


class NoisyStr(str):
    """A str subclass whose overrides must never run."""

    def __add__(self, other: object) -> str:
        TOUCHED.append("NoisyStr.__add__")
        return "overridden"

    def __len__(self) -> int:
        TOUCHED.append("NoisyStr.__len__")
        return 0

    def __str__(self) -> str:
        TOUCHED.append("NoisyStr.__str__")
        return "overridden"

    def __getitem__(self, key: Any) -> str:
        TOUCHED.append("NoisyStr.__getitem__")
        return "overridden"


def _function() -> str:
    return "called"


@pytest.fixture(autouse=True)
def _clean_tripwire() -> Iterator[None]:
    TOUCHED.clear()
    yield
    assert TOUCHED == []


def scope() -> dict[str, Any]:
    return {
        "input": {
            "obj": Tripwire(),
            "fn": _function,
            "cls": Tripwire,
            "mod": os,
            "method": "abc".upper,
            "__class__": "just data",
            "constructor": {"name": "also data"},
            "noisy": NoisyDict(a=1),
            "evil": NoisyStr("text"),
            "status": SnapshotStatus.ACTIVE,
            "list": [Tripwire(), {"x": 1}],
        },
        "globals": Tripwire(),
    }


@pytest.mark.parametrize(
    "expression",
    [
        "__class__",
        "__builtins__",
        "__import__",
        "globals",
        "globals.secret",
        "globals.data",
        "globals.__dict__",
        "globals.__class__",
        "globals.__builtins__",
        "globals['__class__']",
        "input.obj",
        "input.obj.secret",
        "input.obj.data",
        "input.obj.data.x",
        "input.obj.__class__",
        "input.obj.__class__.__mro__",
        "input.obj['secret']",
        "input.obj[0]",
        "input.obj.length",
        "input.fn",
        "input.fn.__globals__",
        "input.fn.__code__",
        "input.cls",
        "input.cls.__mro__",
        "input.cls.__subclasses__",
        "input.mod",
        "input.mod.environ",
        "input.mod.system",
        "input.method",
        "input.method.__self__",
        "input.__dict__",
        "input.keys",
        "input.items",
        "input.get",
        "input.toString",
        "input.constructor.constructor",
        "input.list[0]",
        "input.list[0].secret",
        "input.list.secret",  # first element of the list: the Tripwire
        "''.__class__",
        "''.__class__.__mro__",
        "''.__class__.__mro__.__subclasses__",
        "'abc'.upper",
        "{}.__class__",
        "{}.keys",
        "(1).__class__",
        "(1).real",
        "true.__class__",
        "null.__class__",
        "nodes._context",
        "nodes.lookup",
        "nodes.__class__",
        "nodes.constructor",
        "input.noisy.__class__",
        "input.evil.__class__",
        "input.evil.upper",
    ],
)
def test_python_internals_are_unreachable(expression: str) -> None:
    variables = scope()
    if expression.startswith("nodes"):
        variables = {"nodes": NodesView(MemoryContext())}
    assert evaluate(expression, variables) is None
    assert render(f"v={{{{ {expression} }}}}", variables) == "v="


@pytest.mark.parametrize("expression", ["[].__class__", "[].append", "[null].append"])
def test_dot_access_on_an_array_without_a_first_element_fails_as_in_jexl(
    expression: str,
) -> None:
    subject = "null" if "null" in expression else "undefined"
    name = expression.rsplit(".", 1)[1]
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, scope())
    assert str(caught.value) == (
        f"Jexl Error in [{expression}]: "
        f"TypeError: Cannot read properties of {subject} (reading '{name}')"
    )


@pytest.mark.parametrize(
    "expression",
    [
        "x|__import__",
        "x|eval",
        "x|getattr('__class__')",
        "__import__('os')",
        "eval('1')",
        "exec('1')",
        "getattr(input, 'obj')",
        "constructor('return 1')",
        "input.toString()",
        "''.join([])",
        "input.obj.secret()",
        "input.fn()",
        "globals()",
        "input.method()",
    ],
)
def test_only_registered_callables_can_be_called(expression: str) -> None:
    with pytest.raises(ExpressionError, match=r"^Jexl Error in \["):
        JexlTransformEngine(transforms={"upper": str.upper}).evaluate(expression, scope())


def test_dunder_keys_are_just_data() -> None:
    variables = scope()
    assert evaluate("input.__class__", variables) == "just data"
    assert evaluate("input['__class__']", variables) == "just data"
    assert evaluate("input.constructor.name", variables) == "also data"
    assert evaluate("{__class__: 1}.__class__") == 1


def test_subclass_overrides_never_run() -> None:
    variables = scope()
    assert evaluate("input.noisy.a", variables) == 1
    assert evaluate("input.noisy['a']", variables) == 1
    assert evaluate("'a' in input.noisy", variables) is True
    assert evaluate("input.evil + '!'", variables) == "text!"
    assert evaluate("input.evil.length", variables) == 4
    assert evaluate("input.evil[0]", variables) == "t"
    assert type(evaluate("input.evil", variables)) is str
    assert render("say {{ input.evil }}", variables) == "say text"
    assert evaluate("input.status", variables) == "active"
    assert type(evaluate("input.status", variables)) is str


# --- containers from host code: read through their base class, or opaque ----------------


_READERS = (
    "__iter__",
    "__len__",
    "__getitem__",
    "__contains__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__bool__",
    "__reversed__",
    "__str__",
    "copy",
    "count",
    "index",
    "get",
    "items",
    "keys",
    "values",
)


def _noisy(base: type) -> type:
    """A subclass of ``base`` whose every reading method records its call and lies."""

    def reader(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            TOUCHED.append(f"{base.__name__}.{name}")
            return {"__len__": 9, "__bool__": False}.get(name, "LEAK")

        return method

    namespace = {name: reader(name) for name in _READERS if hasattr(base, name)}
    namespace["__hash__"] = base.__hash__
    return type(f"Noisy{base.__name__}", (base,), namespace)


NoisyList = _noisy(list)
NoisyTuple = _noisy(tuple)
NoisyMapping = _noisy(dict)


class ForeignMapping(Mapping[str, Any]):
    """A mapping that is not a dict: its code must never run (it reads as undefined)."""

    def __getitem__(self, key: str) -> Any:
        TOUCHED.append("ForeignMapping.__getitem__")
        return "LEAK"

    def __iter__(self) -> Iterator[str]:
        TOUCHED.append("ForeignMapping.__iter__")
        return iter(["a"])

    def __len__(self) -> int:
        TOUCHED.append("ForeignMapping.__len__")
        return 1

    def __contains__(self, key: object) -> bool:
        TOUCHED.append("ForeignMapping.__contains__")
        return True


def _containers() -> dict[str, Any]:
    return {
        "l": NoisyList([1, 2]),
        "t": NoisyTuple((1, 2)),
        "d": NoisyMapping(a=1, b=[1, 2]),
        "m": ForeignMapping(),
        "p": MappingProxyType({"a": 1}),
        "ls": [NoisyList([1, 2]), NoisyTuple((3,))],
        "ds": [NoisyMapping(a=1), {"a": 2}],
        "same": [1, 2],
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # list and tuple subclasses: exactly their base content, whatever the operator
        ("l", [1, 2]),
        ("t", [1, 2]),
        ("l + ''", "1,2"),  # `{{ globals.l + '' }}` was "L,E,A,K"
        ("t + ''", "1,2"),
        ("'' + [l, t]", "1,2,1,2"),
        ("l.length", 2),
        ("t.length", 2),
        ("l[1]", 2),
        ("t[0]", 1),
        ("l[.length == undefined]", [1, 2]),
        ("t[1 < 2]", [1, 2]),
        ("2 in l", True),
        ("3 in t", False),
        ("[1, 2] in ls", True),
        ("[3] in ls", True),
        ("l == same", True),
        ("l == t", True),
        ("[l] == [same]", True),
        ("l * 1", None),  # NaN: "1,2" is not a number
        ("l < 'b'", True),
        ("!l", False),
        ("l ? 'yes' : 'no'", "yes"),
        ("{x: l}", {"x": [1, 2]}),
        ("[l, t]", [[1, 2], [1, 2]]),
        ("ls", [[1, 2], [3]]),
        # dict subclasses: their base content
        ("d", {"a": 1, "b": [1, 2]}),
        ("d.a", 1),
        ("d['b'][1]", 2),
        ("d.zz", None),
        ("'a' in d", True),
        ("'zz' in d", False),
        ("d == {a: 1, b: [1, 2]}", True),
        ("{a: 1} in ds", True),
        ("{a: 3} in ds", False),
        ("d + ''", "[object Object]"),
        ("ds[.a > 1]", [{"a": 2}]),
        ("ds[.a == 1].a", 1),
        ("{x: d}", {"x": {"a": 1, "b": [1, 2]}}),
        # any other mapping is opaque: it reads as undefined, never looked into
        ("m", None),
        ("m.a", None),
        ("m['a']", None),
        ("'a' in m", False),
        ("m == m", True),
        ("m == {a: 'LEAK'}", False),
        ("m + ''", "undefined"),
        ("[m]", [None]),
        ("{x: m}", {"x": None}),
        ("m[.a]", []),
        ("p", None),
        ("p.a", None),
    ],
)
def test_containers_are_read_through_their_base_class_only(expression: str, expected: Any) -> None:
    assert evaluate(expression, _containers()) == expected
    assert render(f"{{{{ {expression} }}}}", _containers()) == expected
    assert TOUCHED == []


def test_node_input_containers_are_walked_through_their_base_class() -> None:
    node_input = NoisyMapping(a=NoisyList(["{{ 1 + 1 }}", 3]), b=NoisyTuple(("x",)))
    assert JexlTransformEngine().transform(node_input, MemoryContext(), None) == {
        "a": [2, 3],
        "b": ["x"],
    }
    assert TOUCHED == []


def test_missing_keys_do_not_mutate_defaultdicts() -> None:
    counts: defaultdict[str, list[int]] = defaultdict(list)
    assert evaluate("d.missing", {"d": counts}) is None
    assert evaluate("d['other'].length", {"d": counts}) is None
    assert dict(counts) == {}


def test_filters_never_return_opaque_objects() -> None:
    assert evaluate("input.list[!.x]", scope()) == [None]
    assert evaluate("input.list[.x == 1]", scope()) == [{"x": 1}]
    assert evaluate("input.obj[true]", scope()) is None
    assert evaluate("[input.obj, input.fn]", scope()) == [None, None]
    assert evaluate("{a: input.cls}", scope()) == {"a": None}


def test_registered_callables_receive_only_sanitized_values() -> None:
    received: list[Any] = []

    def spy(*values: Any) -> int:
        received.extend(values)
        return len(values)

    engine = JexlTransformEngine(transforms={"spy": spy}, functions={"spy": spy})
    variables = scope()
    assert engine.evaluate("input.obj|spy(input.fn, input.cls, missing)", variables) == 4
    assert engine.evaluate("spy(input.mod, input.method)", variables) == 2
    assert received == [None, None, None, None, None, None]


# --- property: whatever the expression, only data comes out, only ExpressionError is raised --

NAMES = [
    "input",
    "globals",
    "nodes",
    "obj",
    "data",
    "x",
    "a",
    "length",
    "secret",
    "keys",
    "__class__",
    "__dict__",
    "__globals__",
    "constructor",
    "keep",
    "pick",
]
OPERATORS = ["+", "-", "*", "/", "//", "%", "^", "==", "!=", "<", ">=", "in", "&&", "||"]

names = st.sampled_from(NAMES)
atoms = st.one_of(
    names,
    names.map(lambda name: "." + name),
    st.integers(-3, 3).map(str),
    st.sampled_from(["0.5", "'s'", "''", "'__class__'", "'length'", "true", "false", "null"]),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, names).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"-1 * ({e})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) ?: ({t[1]})"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.tuples(names, inner).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
        st.tuples(inner, names).map(lambda t: f"({t[0]})|{t[1]}"),
        st.tuples(names, st.lists(inner, max_size=2)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    )


expressions = st.recursive(atoms, _extend, max_leaves=12)


def _property_data() -> dict[str, Any]:
    """A scope full of opaque objects, inside containers as well as at the top."""
    tripwire = Tripwire()
    context = MemoryContext.from_mapping(
        {
            "obj": [
                NodeResult.model_construct(
                    output={"x": tripwire, "a": [1, tripwire]}, timestamp=1, error=None, attempt=1
                )
            ]
        }
    )
    return {
        "input": {"obj": tripwire, "a": [1, "two", {"x": tripwire, "secret": 3}], "x": 2.5},
        "globals": tripwire,
        "obj": tripwire,
        "data": [tripwire, {"x": 1, "__class__": "data"}, [tripwire]],
        "x": {"length": 3, "keys": tripwire, "fn": _function},
        "a": "text",
        "nodes": NodesView(context),
        "keys": _containers(),
    }


PROPERTY_ENGINE = JexlTransformEngine(
    transforms={"keep": lambda value, *rest: value},
    functions={"pick": lambda *values: list(values)},
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(expressions)
def test_any_expression_yields_only_json_or_an_expression_error(expression: str) -> None:
    TOUCHED.clear()
    variables = _property_data()
    try:
        value = PROPERTY_ENGINE.evaluate(expression, variables)
    except ExpressionError:
        pass
    else:
        assert is_json(value), (expression, value)  # no opaque object, even inside data
    try:
        text = PROPERTY_ENGINE.render(f"= {{{{ {expression} }}}}", variables)
    except ExpressionError:
        pass
    else:
        assert isinstance(text, str)
    assert TOUCHED == [], expression
