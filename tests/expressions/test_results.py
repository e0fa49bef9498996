"""Only JSON values come out of an expression, whatever the host put in its scope."""

from __future__ import annotations

import enum
import json
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import Any

import pytest

from refluxo import Context, MemoryContext, NodeResult
from refluxo.errors import ExpressionError, TransientError
from refluxo.expressions import JexlTransformEngine, Scope, compile_expression, evaluate, render
from refluxo.frozen import FrozenList, freeze


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Opaque:
    pass


def is_json(value: Any) -> bool:
    """Exactly JSON: exact types, string keys, all the way down (iteratively, each shared
    container once)."""
    pending = [value]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if item is None or type(item) in (bool, int, float, str):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) in (list, FrozenList):
            pending.extend(item)
        elif isinstance(item, dict) and type(item).__name__ in ("dict", "FrozenDict"):
            if not all(type(key) is str for key in item):
                return False
            pending.extend(item.values())
        else:
            return False
    return True


def test_python_objects_are_left_out_as_json_stringify_leaves_out_undefined() -> None:
    value = {
        "module": os,
        "function": print,
        "class": Opaque,
        "object": Opaque(),
        "kept": 1,
        "list": [os, 1, Opaque(), "x"],
        "nested": {"deep": [{"fn": len, "ok": True}]},
    }
    assert evaluate("v", {"v": value}) == {
        "kept": 1,
        "list": [None, 1, None, "x"],
        "nested": {"deep": [{"ok": True}]},
    }
    assert evaluate("v.module", {"v": value}) is None


def test_keys_that_are_not_strings_are_left_out() -> None:
    value = {1: "int", None: "none", ("t",): "tuple", "s": "str", Color.RED: "enum"}
    assert evaluate("v", {"v": value}) == {"s": "str"}
    assert evaluate("v[1]", {"v": value}) is None  # invisible inside expressions as well


def test_subclasses_become_their_base_values() -> None:
    result = evaluate(
        "v", {"v": {"level": Level.HIGH, "names": ("a", "b"), "od": OrderedDict(a=1)}}
    )
    assert result == {"level": 3, "names": ["a", "b"], "od": {"a": 1}}
    assert type(result["level"]) is int
    assert type(result["names"]) is list
    assert type(result["od"]) is dict
    assert type(evaluate("[v]", {"v": Level.HIGH})[0]) is int
    # a mapping that is not a dict is not JSON (its methods would be the host's code)
    assert evaluate("v", {"v": MappingProxyType({"a": [1]})}) is None
    assert evaluate("[v]", {"v": MappingProxyType({"a": [1]})}) == [None]


NUMBERS: dict[str, Any] = {
    "nan": math.nan,
    "big": 10**5000,  # json.dumps cannot even write it (past Python's digit limit)
    "edge": 2**1024 - 2**970,  # the smallest integer a double rounds to infinity
    "largest": 2**1024 - 2**970 - 1,  # a double holds it (rounded): kept exact
    "exact": 2**60 + 1,  # past 2**53: kept exact, as everywhere in the engine
    "floats": [1.5, math.nan, math.inf, -math.inf],
    "ints": [1, 10**400, -(10**400)],
    "sums": [1e308, 1e308, "x"],  # their sum overflows: each is fine
    "frozen": freeze({"a": [1.0, math.inf]}),
    "object": {"a": 1.5, "b": math.nan, "c": "x"},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 / 0", None),
        ("-1 / 0", None),
        ("0 / 0", None),
        ("'x' * 1", None),
        ("2 ^ 10000", None),
        ("[1 / 0, 1]", [None, 1]),
        ("{a: 0 / 0, b: 1}", {"a": None, "b": 1}),
        ("[[1 / 0]]", [[None]]),
        ("nan", None),
        ("big", None),
        ("0 - big", None),
        ("big + 1", None),
        ("[big]", [None]),
        ("{a: big}", {"a": None}),
        ("edge", None),
        ("largest", 2**1024 - 2**970 - 1),
        ("exact", 2**60 + 1),
        ("floats", [1.5, None, None, None]),
        ("ints", [1, None, None]),
        ("sums", [1e308, 1e308, "x"]),
        ("frozen", {"a": [1.0, None]}),
        ("object", {"a": 1.5, "b": None, "c": "x"}),
        ("[floats, ints]", [[1.5, None, None, None], [1, None, None]]),
    ],
)
def test_numbers_json_cannot_hold_become_null(expression: str, expected: Any) -> None:
    # As JSON.stringify writes them: `{{ 1/0 }}`, `{{ [1/0] }}` gave inf and NaN, and
    # `{{ globals.big }}` an integer no JSON encoder could write.
    result = evaluate(expression, NUMBERS)
    assert result == expected
    json.dumps(result, allow_nan=False)  # strict JSON
    assert render(f"{{{{ {expression} }}}}", NUMBERS) == expected


def test_numbers_keep_javascripts_text_when_interpolated() -> None:
    assert render("{{ 1 / 0 }}, {{ -1 / 0 }}, {{ 0 / 0 }}.") == "Infinity, -Infinity, NaN."
    assert render("{{ [1 / 0, big] }}", {"big": 10**400}) == [None, None]


def test_data_without_bad_numbers_is_still_returned_itself() -> None:
    data = {"a": [1.5, 2**60, -3], "b": [1e308, 1e308]}
    assert evaluate("v", {"v": data}) is data
    result = evaluate("v", {"v": {"a": data["a"], "b": [math.inf]}})
    assert result["a"] is data["a"]


def test_json_data_is_returned_itself_not_copied() -> None:
    data = {"a": [1, {"b": "c"}], "d": None}
    assert evaluate("v", {"v": data}) is data
    frozen = freeze(data)
    assert evaluate("v", {"v": frozen}) is frozen
    assert evaluate("v.a", {"v": frozen}) is frozen["a"]


def test_only_the_containers_needing_a_change_are_copied() -> None:
    clean = {"x": [1, 2]}
    value = {"clean": clean, "dirty": [print]}
    result = evaluate("v", {"v": value})
    assert result == {"clean": {"x": [1, 2]}, "dirty": [None]}
    assert result is not value
    assert result["clean"] is clean


def test_shared_containers_are_converted_once() -> None:
    value: Any = [Opaque()]
    for _ in range(40):
        value = [value, value]  # 2**40 leaves behind 41 lists
    scope = Scope({"v": value})
    result = compile_expression("v").evaluate(scope)
    assert result[0] is result[1]
    leaf = result
    for _ in range(40):
        leaf = leaf[0]
    assert leaf == [None]
    assert scope.meter.spent < 1_000


def test_a_result_containing_itself_is_refused_with_its_path() -> None:
    cycle: list[Any] = [1, {"a": None}]
    cycle[1]["a"] = cycle
    with pytest.raises(ExpressionError) as caught:
        evaluate("v", {"v": cycle})
    assert str(caught.value) == (
        "Jexl Error in [v]: the result is not JSON: it contains itself at result[1]['a']"
    )
    assert evaluate("v[0]", {"v": cycle}) == 1  # reading through a cycle is fine


def test_deep_results_are_converted_without_recursion() -> None:
    deep: Any = [print]
    for _ in range(20_000):
        deep = [deep]
    result = evaluate("v", {"v": deep})
    for _ in range(20_000):
        result = result[0]
    assert result == [None]


def test_nodes_views_become_plain_dicts() -> None:
    result = NodeResult.model_construct(output={"x": print, "y": 1}, timestamp=1, error=None)
    context = MemoryContext.from_mapping({"a": [result]})
    engine = JexlTransformEngine()
    everything = engine.transform("{{ nodes }}", context, None)
    assert everything == {
        "a": {
            "output": {"y": 1},
            "last": {"data": {"y": 1}, "timestamp": 1},
            "all": [{"data": {"y": 1}, "timestamp": 1}],
        }
    }
    assert is_json(everything)
    assert is_json(engine.transform("{{ [nodes.a, nodes.a.all] }}", context, None))


def test_callables_results_come_out_as_json() -> None:
    engine = JexlTransformEngine(
        transforms={"wrap": lambda value: {"v": value, "f": print}},
        functions={"module": lambda: os, "pair": lambda: (1, Opaque())},
    )
    assert engine.evaluate("1|wrap") == {"v": 1}
    assert engine.evaluate("module()") is None
    assert engine.evaluate("pair()") == [1, None]
    assert engine.render("x{{ module() }}") == "x[object Object]"


class UnavailableStore(Context):
    """A context whose every read fails for a reason that may pass."""

    def appended(self, node_id: str, result: NodeResult) -> Context:
        raise NotImplementedError

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        raise TransientError("store unavailable")

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    "template", ["{{ nodes }}", "{{ [nodes][0] }}", "x{{ nodes.a.all }}", "{{ 'a' in nodes }}"]
)
def test_a_transient_error_from_the_store_passes_through_untouched(template: str) -> None:
    with pytest.raises(TransientError, match="store unavailable") as caught:
        JexlTransformEngine().transform({"v": template}, UnavailableStore(), None)
    assert type(caught.value) is TransientError


@pytest.mark.parametrize(
    "template",
    ["{{ v }}", "{{ [v] }}", "{{ {a: v} }}", "{{ [v, v][.x || true] }}", "{{ v|keep }}"],
)
def test_every_path_out_is_json(template: str) -> None:
    engine = JexlTransformEngine(transforms={"keep": lambda value: value})
    value = {"x": [os, Level.HIGH, ("a", Color.RED)], 2: "no", "f": print}
    assert is_json(engine.render(template, {"v": value}))


def test_render_joins_without_looking_into_objects() -> None:
    assert render("{{ v }}!", {"v": [1, Opaque(), None, [2, print]]}) == "1,,,2,!"
