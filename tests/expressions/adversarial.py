"""Adversarial expressions and the largest data they may read, shared by tests and benchmarks.

The data is what a caller can put in front of an expression: 1 MiB of JSON (the request
body limit of ``POST /runs``), reached as ``input`` and as ``nodes.start.output``. Its
parts are built to feed the known ways of multiplying work: long strings for number
conversion, comparison and search; long arrays for filters and membership; objects for
filters with relative paths; a long run of ``{{`` for the template scanner.

The strategies generate expressions up to the length limit that combine those ways:
nested filters, membership, concatenation, arithmetic on strings, array literals that
repeat a costly operand, structural equality.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st

from refluxo import MemoryContext, NodeResult
from refluxo.expressions import (
    MAX_EXPRESSION_LENGTH,
    JexlTransformEngine,
    Scope,
    compile_template,
    engine,
)

MIB: Final = 1 << 20


def _fill(text: str, size: int) -> str:
    return (text * (size // len(text) + 1))[:size]


@functools.cache
def large_data(size: int = MIB) -> dict[str, Any]:
    """About ``size`` bytes of JSON data (never more), built once per size.

    A quarter of it is long strings, a quarter a list of numbers, a quarter a list of
    small objects, the rest strings and a deep structure.
    """
    quarter = size // 4
    strings = quarter // 3
    count = quarter // 8  # "123456, " ~ 8 bytes
    objects = quarter // 20  # {"v": 123, "s": "x"}, ~ 20 bytes
    data: dict[str, Any] = {
        "digits": "1" * strings,
        "text": _fill("ab", strings),
        "braces": "{{" * (strings // 2),
        "numbers": list(range(count)),
        "objects": [{"v": k % 1000, "s": "x"} for k in range(objects)],
        "strings": [str(k % 997) for k in range(quarter // 12)],
        "nested": {"a": {"b": {"c": [1, 2, 3]}}},
    }
    while len(json.dumps(data)) > size:  # trim the lists until the bound holds
        data["objects"] = data["objects"][: len(data["objects"]) * 9 // 10]
        data["numbers"] = data["numbers"][: len(data["numbers"]) * 9 // 10]
    return data


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (what a request body's limit counts)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


ROOTS: Final = (
    "input.digits",
    "input.text",
    "input.braces",
    "input.numbers",
    "input.objects",
    "input.strings",
    "input.nested",
    "input",
    "nodes.start.output.numbers",
    "nodes.start.output.digits",
    "nodes.start.all",
)
RELATIVE: Final = (".v", ".s", ".length", ".a")
LITERALS: Final = ("1", "1.2", "0", "'1'", "'x'", "''", "true", "null", "[]", "{}", "'{{'")
BINARY: Final = ("+", "-", "*", "/", "==", "!=", "<", ">=", "in", "&&", "||", "%", "^")

atoms = st.one_of(st.sampled_from(ROOTS), st.sampled_from(RELATIVE), st.sampled_from(LITERALS))


def _array_of(operand: str, copies: int) -> str:
    """An array literal of ``copies`` of ``operand``, fewer if the length limit needs it (so
    that nested repetitions cannot grow exponentially while they are generated)."""
    copies = max(1, min(copies, MAX_EXPRESSION_LENGTH // (len(operand) + 2)))
    return "[" + ", ".join([operand] * copies) + "]"


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        # filters, whose predicates may hold filters again: work multiplies per level
        st.tuples(st.sampled_from(ROOTS), inner).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        # membership, concatenation, arithmetic and comparison on whatever the operands are
        st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        # an array literal repeating one operand: each copy is evaluated
        st.tuples(inner, st.integers(2, 64)).map(lambda t: _array_of(*t)),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) ? ({t[1]}) : ({t[2]})"),
        st.tuples(inner, st.sampled_from(["a", "v", "length"])).map(
            lambda t: f"{{{t[1]}: {t[0]}}}"
        ),
        inner.map(lambda e: f"({e}).length"),
        inner.map(lambda e: f"-1 * ({e})"),
    )


expressions: st.SearchStrategy[str] = st.recursive(atoms, _grow, max_leaves=24).filter(
    lambda expression: len(expression) <= MAX_EXPRESSION_LENGTH
)
"""Random adversarial expressions, every one within the length limit."""


def nested_filters(depth: int, root: str = "input.numbers") -> str:
    """``depth`` filters, each one's predicate filtering ``root`` again: work is
    ``len(root) ** depth`` without a budget."""
    expression = "true"
    for _ in range(depth):
        expression = f"{root}[.length == undefined && ({expression})].length > 0"
    return f"{root}[{expression}]"


nested_filter_expressions = st.builds(
    nested_filters,
    st.integers(1, 40),
    st.sampled_from(["input.numbers", "input.objects", "input.strings", "[1, 2, 3, 4, 5, 6]"]),
).filter(lambda expression: len(expression) <= MAX_EXPRESSION_LENGTH)
"""Filters nested in filter predicates, up to the length limit."""


def repeated(operand: str, separator: str = " + ", limit: int = MAX_EXPRESSION_LENGTH) -> str:
    """``operand`` repeated with ``separator`` as often as the length limit allows, inside
    an array literal when ``separator`` is a comma."""
    copies = max(1, (limit - 2) // (len(operand) + len(separator)))
    body = separator.join([operand] * copies)
    return f"[{body}]" if separator.strip() == "," else body


amplifying_expressions = st.builds(
    repeated,
    st.sampled_from(
        [
            "input.text + input.text",
            "input.digits + 'x'",
            "'' + input.numbers",
            "input.objects[.v > 1]",
            "input.objects[.v in input.numbers]",
            "input.digits * 1",
            "input.text == input.digits",
            "'ab' in input.text",
            "nodes.start.all",
        ]
    ),
    st.sampled_from([", ", " + ", " == ", " && "]),
)
"""One costly operand repeated up to the length limit (in arrays, sums, comparisons)."""


# --- the worst cases, each a run of one node's templates ---------------------------------


@dataclass(frozen=True)
class Case:
    """One attack: a node's templates, evaluated with one scope over the data given.

    ``input`` is ``data()``, and so is ``nodes.start.output`` (with ``history`` results);
    ``globals`` is ``globals_()``. ``outcome`` is what the evaluation must end with:
    ``"ok"`` or the end of the ``ExpressionError`` message.
    """

    name: str
    attack: str
    templates: dict[str, str]
    data: Callable[[], Any]
    outcome: str
    history: int = 1
    globals_: Callable[[], Any] = dict
    root: str = "input"
    """The data the case reads, for the baseline ``{{ root }}``."""


class Opaque:
    """A Python object that is not JSON: it must never come out of an expression."""


def _python_globals() -> dict[str, Any]:
    return {
        "key": "value",
        "module": os,
        "function": print,
        "object": Opaque(),
        "nested": {"fine": [1, "two"], "class": Opaque, 3: "int key", "bad": [os, 1]},
    }


def _items(count: int) -> dict[str, Any]:
    return {"a": [{"v": k} for k in range(count)], "b": list(range(count))}


def _fill_templates(template: str, budget: int = 64 * 1024) -> dict[str, str]:
    """As many copies of ``template`` as 64 KiB of node data holds."""
    return {f"t{k}": template for k in range(budget // (len(template) + 10))}


def _array_literal(seed: int) -> str:
    """A template holding an array literal of numbers at the length limit (4,083
    characters, 4,083 tokens: the densest the grammar allows), distinct for each seed."""
    return "{{ [" + ",".join(["1"] * 2_040) + f",{seed % 10}] " + "}}"


def _tiny_expressions(size: int = 65_000) -> str:
    """One template of ``size`` characters holding thousands of tiny distinct expressions
    (after a space: a string starting with ``{{`` and ending with ``}}`` is one expression)."""
    return " " + "".join(f"{{{{[{k}]}}}}" for k in range(size // 7))[: size - 1]


def _padded_number(char: str) -> dict[str, str]:
    """About 1 MiB of UTF-8 JSON: ``char`` repeated, then a digit."""
    return {"s": char * ((MIB - 64) // len(char.encode())) + "1"}


WORK_LIMIT: Final = "expression work limit of 400000 operations exceeded"
SIZE_LIMIT: Final = "expression size limit of 4000000 characters and elements built exceeded"
STRING_LIMIT: Final = "string result would be longer than 1000000 characters"

CASES: Final = (
    Case(
        "number: 100 KB amount",
        "`amount * 1.2` on 100 KB of digits and a letter (the issue: ~17 minutes)",
        {"total": "{{ nodes.start.output.amount * 1.2 }}"},
        lambda: {"amount": "1" * 100_000 + "x"},
        "ok",
        root="nodes.start.output",
    ),
    Case(
        "number: 1 MiB, not a number",
        "`*`, `-`, `/`, `<`, `>`, `==` converting 1 MiB of digits ending in `x`",
        {
            op: f"{{{{ nodes.start.output.amount {op} 1 }}}}"
            for op in ("*", "-", "/", "<", ">", "==")
        },
        lambda: {"amount": "1" * (MIB - 20) + "x"},
        "ok",
        root="nodes.start.output",
    ),
    Case(
        "number: 1 MiB of white space, 40 times",
        "`s * 1` in 40 templates, `s` 349,505 U+3000 (ideographic space) then a digit",
        {f"k{k}": "{{ nodes.start.output.s * 1 }}" for k in range(40)},
        lambda: _padded_number("\u3000"),
        WORK_LIMIT,
        root="nodes.start.output",
    ),
    Case(
        "template: `{{` x 32,768",
        "the template scanner on 64 KiB of unclosed `{{` (the issue: 7.9 s at 8,000)",
        {"text": "{{" * 32_768},
        dict,
        "ok",
    ),
    Case(
        "nested filters, 166 chars",
        "filters nested 11 deep over 10 items: 10^11 predicates (exponential)",
        {"v": "{{ " + "input.a[.v && " * 11 + "1" + "]" * 11 + " }}"},
        lambda: _items(10),
        WORK_LIMIT,
    ),
    Case(
        "nested filters, 4 KiB",
        "filters nested 10 deep in predicates, repeated up to the length limit, over 1 MiB",
        {"v": "{{ " + repeated(nested_filters(10, "input.strings"), ", ", 4_000) + " }}"},
        large_data,
        WORK_LIMIT,
    ),
    Case(
        "membership, 2,000 items",
        "`input.a[.v in input.b]` (first measured at 4.3 s, quadratic)",
        {"v": "{{ input.a[.v in input.b] }}"},
        lambda: _items(2_000),
        WORK_LIMIT,
    ),
    Case(
        "membership, 1 MiB",
        "`in` over every number for every object of 1 MiB",
        {"v": "{{ input.objects[.v in input.numbers] }}"},
        large_data,
        WORK_LIMIT,
    ),
    Case(
        "membership of objects, 99,000 `{}`",
        "`{'a': 1} in a`, `a` 99,000 empty objects (each was compared: 0.4 to 2 s)",
        {"v": "{{ {'a': 1} in nodes.start.output.a }}"},
        lambda: {"a": [{} for _ in range(99_000)]},
        "ok",
        root="nodes.start.output",
    ),
    Case(
        "membership of arrays, 99,000 `[2]`",
        "`[1] in a`, `a` 99,000 arrays of one other number: every element compared",
        {"v": "{{ [1] in nodes.start.output.a }}"},
        lambda: {"a": [[2] for _ in range(99_000)]},
        WORK_LIMIT,
        root="nodes.start.output",
    ),
    Case(
        "amplification, 2.7 KB",
        "`[s + s, ...]` on a 500 KB string (the issue: 292 MB)",
        {"v": "{{ " + repeated("input.s + input.s", ", ", 2_700) + " }}"},
        lambda: {"s": "x" * 500_000},
        SIZE_LIMIT,
    ),
    Case(
        "amplification, 4 KiB of strings",
        "concatenating the longest strings of 1 MiB up to the length limit",
        {"v": "{{ " + repeated("input.text + input.digits", ", ") + " }}"},
        large_data,
        SIZE_LIMIT,
    ),
    Case(
        "join, 1 MiB",
        "arrays of 1 MiB converted to one string, repeated",
        {"v": "{{ '' + " + repeated("input.numbers", ", ", 4_000) + " }}"},
        large_data,
        WORK_LIMIT,
    ),
    Case(
        "join, 1 MiB of strings",
        "the longest strings of 1 MiB joined, past the string length limit",
        {"v": "{{ '' + [input.text, input.digits, input.braces] }}"},
        lambda: {"text": "ab" * 174_000, "digits": "1" * 349_000, "braces": "{{" * 174_000},
        STRING_LIMIT,
    ),
    Case(
        "structural equality, 1 MiB",
        "comparing two arrays of 250,000 values each (charged as it compares)",
        {"v": "{{ input.a == input.b }}"},
        lambda: {"a": [0] * 250_000, "b": [0] * 250_000},
        WORK_LIMIT,
    ),
    Case(
        "structural equality in a filter",
        "comparing 13,000 objects with a copy, once per item",
        {"v": "{{ input.numbers[.x || input.objects == input.copy] }}"},
        lambda: {
            "numbers": list(range(50)),
            "objects": large_data()["objects"],
            "copy": [dict(item) for item in large_data()["objects"]],
        },
        WORK_LIMIT,
    ),
    Case(
        "string reads, 1 MiB",
        "search, compare and convert the longest strings once per item",
        {
            "v": "{{ input.objects[.s in input.text || input.text < input.digits"
            " || input.digits * 1] }}"
        },
        large_data,
        WORK_LIMIT,
    ),
    Case(
        "history: `all` of 10,000 results",
        "reading `nodes.start.all` inside a filter",
        {"v": "{{ input.numbers[nodes.start.all.length > .v] }}"},
        large_data,
        WORK_LIMIT,
        history=10_000,
    ),
    Case(
        "64 KiB of templates",
        "one node holding ~1,000 expensive templates (they share one budget)",
        _fill_templates("{{ input.a[.v in input.b].length }}"),
        lambda: _items(300),
        WORK_LIMIT,
    ),
    Case(
        "parse: 15 templates of 4 KiB",
        "15 distinct array literals at the length limit in one node (1.44 s to parse)",
        {f"k{k}": _array_literal(k) for k in range(15)},
        dict,
        WORK_LIMIT,
    ),
    Case(
        "parse: 6,611 expressions in 64 KiB",
        "`{{[0]}}{{[1]}}...{{[6610]}}` in one 65,000-character string (0.88 s to parse)",
        {"v": _tiny_expressions()},
        dict,
        WORK_LIMIT,
    ),
    Case(
        "result: 1 MiB returned 400 times",
        "the JSON check of a result naming the same 1 MiB many times",
        {"v": "{{ " + repeated("input", ", ") + " }}"},
        large_data,
        "ok",
    ),
    Case(
        "`{{ globals }}` with Python objects",
        "modules, functions and objects in globals never come out",
        {"v": "{{ globals }}", "w": "{{ [globals.module, globals.nested] }}"},
        dict,
        "ok",
        globals_=_python_globals,
        root="globals",
    ),
)
"""Every attack the bounds defend against, with the outcome each must end with."""


def case_scope(case: Case) -> Scope:
    """The scope ``JexlTransformEngine.transform`` would evaluate the case's node with."""
    data = case.data()
    result = NodeResult.model_construct(output=data, timestamp=1, error=None, attempt=1)
    context = MemoryContext.from_mapping({"start": [result] * case.history})
    return JexlTransformEngine().scope(context, data, case.globals_())


def run_case(case: Case, scope: Scope) -> dict[str, Any]:
    """Evaluate every template of ``case`` with ``scope``, as one node's input (parsing
    charged to the scope, as ``JexlTransformEngine.transform`` does). An earlier version of
    the package, which ``bench/expressions.py --before`` may load, has no ``resolve``: its
    templates are evaluated as its engine did."""
    resolve = getattr(engine, "resolve", None)
    if resolve is None:
        return {key: compile_template(text)(scope) for key, text in case.templates.items()}
    result: dict[str, Any] = resolve(case.templates, scope)
    return result
