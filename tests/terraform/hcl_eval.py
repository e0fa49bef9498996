"""Evaluate the module's own expressions the way Terraform would, offline.

The tests assert what the configuration *computes* (the retry schedule, the dispatch
deadline, the queue's concurrency, the source archive's file list, whether a variable
validation accepts a value), not only what it says. This evaluates the subset of the HCL
expression language the module uses, as python-hcl2 prints it: literals and templates,
``var.`` / ``local.`` / ``path.module`` references, arithmetic, comparison and logic
operators, the conditional, list / object literals, ``for`` expressions, indexing and
attribute access, and the built-in functions listed in :data:`FUNCTIONS`
(``fileset`` walks the disk like Terraform's).

References to resources and data sources are not known before apply: they evaluate to a
:class:`Ref`, a string that reads ``${google_x.y.attr}``, so a computed map can still be
compared with the expected one.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.terraform.hcl_config import TERRAFORM_DIR, TerraformConfig

Scope = dict[str, Any]
Node = Callable[[Scope], Any]


class HclError(Exception):
    """What Terraform would report as an error while evaluating (``can()`` catches it)."""


class Ref(str):
    """A value only known after apply, spelled as the reference it comes from."""

    __slots__ = ()


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||=>|\.\.\.|[-+*/%<>!?:,.\[\](){}=])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unescape(text: str) -> str:
    """An HCL quoted string's content (escapes as written) as its value."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            nxt = text[index + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                index += 2
                continue
            if nxt == "u" and index + 6 <= len(text):
                out.append(chr(int(text[index + 2 : index + 6], 16)))
                index += 6
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing the ``${`` at ``start`` (strings inside skipped)."""
    depth, index, in_string = 0, start + 1, False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise HclError(f"unclosed ${{ in {text!r}")


@dataclass
class _Template:
    """A string with ``${...}`` parts: literal text and expression nodes, in order."""

    parts: list[str | Node] = field(default_factory=list)

    def __call__(self, scope: Scope) -> Any:
        if len(self.parts) == 1 and not isinstance(self.parts[0], str):
            return self.parts[0](scope)  # "${expr}" alone keeps the expression's type
        text = ""
        for part in self.parts:
            text += part if isinstance(part, str) else _to_string(part(scope))
        return text


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value)
    if isinstance(value, str):
        return value
    raise HclError(f"cannot use {value!r} in a string template")


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HclError(f"a number is required, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _Parser:
    """Recursive descent over one expression; builds closures evaluated per scope."""

    def __init__(self, evaluator: Evaluator, text: str) -> None:
        self.evaluator = evaluator
        self.text = text
        self.position = 0
        self.tokens: list[tuple[str, str, int]] = []
        self._tokenize()
        self.index = 0

    def _tokenize(self) -> None:
        position = 0
        while position < len(self.text):
            match = _TOKEN.match(self.text, position)
            if match is None:
                raise HclError(f"cannot read {self.text[position:]!r}")
            kind = match.lastgroup or ""
            if kind == "string":
                end = self._string_end(position)
                self.tokens.append(("string", self.text[position + 1 : end], position))
                position = end + 1
                continue
            if kind != "space":
                self.tokens.append((kind, match.group(), position))
            position = match.end()
        self.tokens.append(("end", "", len(self.text)))

    def _string_end(self, start: int) -> int:
        index = start + 1
        while index < len(self.text):
            char = self.text[index]
            if char == "\\":
                index += 2
                continue
            if char == "$" and self.text.startswith("${", index):
                index = _closing_brace(self.text, index) + 1
                continue
            if char == '"':
                return index
            index += 1
        raise HclError(f"unterminated string in {self.text!r}")

    # -- token helpers ------------------------------------------------------------------

    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def accept(self, value: str) -> bool:
        kind, text, _ = self.peek()
        if kind in ("op", "ident") and text == value:
            self.index += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise HclError(f"expected {value!r} at {self.peek()} in {self.text!r}")

    def parse(self) -> Node:
        node = self.expression()
        if self.peek()[0] != "end":
            raise HclError(f"unexpected {self.peek()} in {self.text!r}")
        return node

    # -- grammar ------------------------------------------------------------------------

    def expression(self) -> Node:
        condition = self.binary(0)
        if self.accept("?"):
            when_true = self.expression()
            self.expect(":")
            when_false = self.expression()

            def conditional(scope: Scope) -> Any:
                chosen = condition(scope)
                if not isinstance(chosen, bool):
                    raise HclError(f"condition is not a bool: {chosen!r}")
                return when_true(scope) if chosen else when_false(scope)

            return conditional
        return condition

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", "<=", ">", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            kind, text, _ = self.peek()
            if kind != "op" or text not in self._LEVELS[level]:
                return left
            self.index += 1
            right = self.binary(level + 1)
            left = _binary(text, left, right)

    def unary(self) -> Node:
        if self.accept("!"):
            operand = self.unary()

            def negation(scope: Scope) -> Any:
                value = operand(scope)
                if not isinstance(value, bool):
                    raise HclError(f"! needs a bool, got {value!r}")
                return not value

            return negation
        if self.accept("-"):
            operand = self.unary()
            return lambda scope: -_number(operand(scope))
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.peek()[1] == "." and self.peek(1)[0] == "ident":
                self.index += 1
                name = self.peek()[1]
                self.index += 1
                node = _attribute(node, name)
            elif self.peek()[1] == "[" and self.peek()[0] == "op":
                self.index += 1
                key = self.expression()
                self.expect("]")
                node = _index(node, key)
            else:
                return node

    def primary(self) -> Node:
        kind, text, _ = self.peek()
        if kind == "number":
            self.index += 1
            number = float(text) if any(c in text for c in ".eE") else int(text)
            return lambda scope: _number(number)
        if kind == "string":
            self.index += 1
            return self.evaluator.template(text, escaped=True)
        if kind == "op" and text == "(":
            self.index += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "op" and text == "[":
            return self.list_or_for()
        if kind == "op" and text == "{":
            return self.object_or_for()
        if kind == "ident":
            return self.identifier()
        raise HclError(f"unexpected {text!r} in {self.text!r}")

    def identifier(self) -> Node:
        name = self.peek()[1]
        self.index += 1
        if name in ("true", "false"):
            value = name == "true"
            return lambda scope: value
        if name == "null":
            return lambda scope: None
        if self.peek()[1] == "(" and self.peek()[0] == "op":
            return self.call(name)
        if name == "var" or name == "local":
            self.expect(".")
            member = self.peek()[1]
            self.index += 1
            if name == "var":
                return lambda scope: self.evaluator.variable(member)
            return lambda scope: self.evaluator.local(member)
        if name == "path":
            self.expect(".")
            member = self.peek()[1]
            self.index += 1
            if member not in ("module", "root"):
                raise HclError(f"path.{member} is not supported")
            return lambda scope: str(self.evaluator.module_dir)
        if name in ("data", "ephemeral") or ("_" in name and self.peek()[1] == "."):
            return self.reference(name)

        def symbol(scope: Scope) -> Any:
            if name not in scope:
                raise HclError(f"unknown symbol {name!r}")
            return scope[name]

        return symbol

    def reference(self, root: str) -> Node:
        """A resource / data / ephemeral reference: everything up to the last attribute."""
        start = self.peek()[2]
        end = start
        while True:
            kind, text, _ = self.peek()
            if text == "." and self.peek(1)[0] == "ident":
                end = self.peek(1)[2] + len(self.peek(1)[1])
                self.index += 2
            elif text == "[" and kind == "op" and self.peek(2)[1] == "]":
                end = self.peek(2)[2] + 1
                self.index += 3
            else:
                break
        spelled = root + self.text[start:end]
        return lambda scope: Ref("${" + spelled + "}")

    def call(self, name: str) -> Node:
        self.expect("(")
        arguments: list[Node] = []
        expand = False
        while not self.accept(")"):
            arguments.append(self.expression())
            if self.accept("..."):
                expand = True
            if not self.accept(","):
                self.expect(")")
                break
        if name in ("can", "try"):
            return _lazy_call(name, arguments)
        function = FUNCTIONS.get(name)
        if function is None:
            raise HclError(f"function {name}() is not supported by the evaluator")
        evaluator = self.evaluator

        def invoke(scope: Scope) -> Any:
            values = [argument(scope) for argument in arguments]
            if expand:
                values = [*values[:-1], *values[-1]]
            return function(evaluator, *values)

        return invoke

    def list_or_for(self) -> Node:
        self.expect("[")
        if self.peek()[1] == "for" and self.peek(1)[0] == "ident":
            self.index += 1
            names = [self.peek()[1]]
            self.index += 1
            if self.accept(","):
                names.append(self.peek()[1])
                self.index += 1
            self.expect("in")
            collection = self.expression()
            self.expect(":")
            body = self.expression()
            condition: Node | None = None
            if self.accept("if"):
                condition = self.expression()
            self.expect("]")
            return _for_list(names, collection, body, condition)
        items: list[Node] = []
        while not self.accept("]"):
            items.append(self.expression())
            if not self.accept(","):
                self.expect("]")
                break
        return lambda scope: [item(scope) for item in items]

    def object_or_for(self) -> Node:
        self.expect("{")
        if self.peek()[1] == "for" and self.peek(1)[0] == "ident":
            raise HclError("object for expressions are not supported by the evaluator")
        entries: list[tuple[Node, Node]] = []
        while not self.accept("}"):
            kind, text, _ = self.peek()
            if kind == "ident" and self.peek(1)[1] in ("=", ":"):
                self.index += 1
                key = _constant(text)
            else:
                key = self.expression()
            if not (self.accept("=") or self.accept(":")):
                raise HclError(f"expected = in object {self.text!r}")
            entries.append((key, self.expression()))
            self.accept(",")
        return lambda scope: {_to_string(k(scope)): v(scope) for k, v in entries}


def _constant(value: Any) -> Node:
    return lambda scope: value


def _binary(operator: str, left: Node, right: Node) -> Node:
    def apply(scope: Scope) -> Any:
        if operator in ("&&", "||"):
            first = left(scope)
            if not isinstance(first, bool):
                raise HclError(f"{operator} needs bools, got {first!r}")
            if operator == "&&" and not first:
                return False
            if operator == "||" and first:
                return True
            second = right(scope)
            if not isinstance(second, bool):
                raise HclError(f"{operator} needs bools, got {second!r}")
            return second
        a, b = left(scope), right(scope)
        if operator == "==":
            return _equal(a, b)
        if operator == "!=":
            return not _equal(a, b)
        x, y = _number(a), _number(b)
        if operator == "+":
            return _number(x + y)
        if operator == "-":
            return _number(x - y)
        if operator == "*":
            return _number(x * y)
        if operator == "/":
            if y == 0:
                raise HclError("division by zero")
            return _number(x / y)
        if operator == "%":
            return _number(math.fmod(x, y))
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[operator]

    return apply


def _equal(a: Any, b: Any) -> bool:
    """HCL's ==: equal types and values (1 == 1.0, but "1" != 1 and true != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    numbers = (int, float)
    if isinstance(a, numbers) or isinstance(b, numbers):
        return isinstance(a, numbers) and isinstance(b, numbers) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and str(a) == str(b)
    return bool(a == b)


def _attribute(node: Node, name: str) -> Node:
    def get(scope: Scope) -> Any:
        value = node(scope)
        if isinstance(value, Ref):
            return Ref(value[:-1] + f".{name}}}")
        if not isinstance(value, Mapping) or name not in value:
            raise HclError(f"no attribute {name!r} in {value!r}")
        return value[name]

    return get


def _index(node: Node, key: Node) -> Node:
    def get(scope: Scope) -> Any:
        value, index = node(scope), key(scope)
        if isinstance(value, Mapping):
            if index not in value:
                raise HclError(f"no key {index!r}")
            return value[index]
        if isinstance(value, list):
            position = _number(index)
            if not isinstance(position, int) or not 0 <= position < len(value):
                raise HclError(f"index {index!r} out of range")
            return value[position]
        raise HclError(f"cannot index {value!r}")

    return get


def _for_list(names: list[str], collection: Node, body: Node, condition: Node | None) -> Node:
    def build(scope: Scope) -> list[Any]:
        source = collection(scope)
        if isinstance(source, Mapping):
            pairs: Sequence[tuple[Any, Any]] = sorted(source.items())
        elif isinstance(source, list):
            pairs = list(enumerate(source))
        else:
            raise HclError(f"cannot iterate over {source!r}")
        out: list[Any] = []
        for key, value in pairs:
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = key, value
            else:
                inner[names[0]] = value
            if condition is not None:
                keep = condition(inner)
                if not isinstance(keep, bool):
                    raise HclError(f"for condition is not a bool: {keep!r}")
                if not keep:
                    continue
            out.append(body(inner))
        return out

    return build


def _lazy_call(name: str, arguments: list[Node]) -> Node:
    def invoke(scope: Scope) -> Any:
        if name == "can":
            (argument,) = arguments
            try:
                argument(scope)
            except HclError:
                return False
            return True
        for argument in arguments:
            try:
                return argument(scope)
            except HclError:
                continue
        raise HclError("no try() argument succeeded")

    return invoke


# --- built-in functions --------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fileset()'s pattern language (doublestar): ``*``, ``**``, ``?``, ``{a,b}``."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:[^/]*/)*", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "{":
            end = pattern.index("}", index)
            choices = pattern[index + 1 : end].split(",")
            out, index = out + "(?:" + "|".join(re.escape(c) for c in choices) + ")", end + 1
        elif pattern[index] == "[":
            raise HclError("character classes in fileset() patterns are not supported")
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def fileset(root: str, pattern: str) -> list[str]:
    """Terraform's ``fileset(path, pattern)``: the regular files (symlinks followed) under
    ``path`` whose relative, slash-separated path matches ``pattern``, sorted."""
    base = Path(root)
    regex = _glob_regex(pattern)
    first = pattern.split("/", 1)[0]
    first_regex = _glob_regex(first)
    matches: list[str] = []
    if not base.is_dir():
        return matches
    for entry in sorted(base.iterdir()):
        if not first_regex.fullmatch(entry.name):
            continue
        if entry.is_file():
            if regex.fullmatch(entry.name):
                matches.append(entry.name)
            continue
        if not entry.is_dir():
            continue
        for directory, _dirs, files in os.walk(entry, followlinks=True):
            for name in files:
                path = Path(directory) / name
                relative = path.relative_to(base).as_posix()
                if path.is_file() and regex.fullmatch(relative):
                    matches.append(relative)
    return sorted(set(matches))


def _regex(_: Evaluator, pattern: str, text: str) -> Any:
    match = re.search(pattern, text)
    if match is None:
        raise HclError(f"{pattern!r} does not match {text!r}")
    if match.re.groups == 0:
        return match.group()
    if match.re.groupindex:
        return match.groupdict()
    return list(match.groups())


def _range(_: Evaluator, *bounds: Any) -> list[Any]:
    numbers = [_number(b) for b in bounds]
    start, stop, step = 0, 0, 1
    if len(numbers) == 1:
        stop = int(numbers[0])
    elif len(numbers) == 2:
        start, stop = int(numbers[0]), int(numbers[1])
    else:
        start, stop, step = (int(n) for n in numbers)
    return list(range(start, stop, step))


def _sum(_: Evaluator, values: list[Any]) -> Any:
    if not values:
        raise HclError("sum() of an empty list")
    return _number(sum(_number(v) for v in values))


def _slice(_: Evaluator, values: list[Any], start: Any, end: Any) -> list[Any]:
    first, last = int(_number(start)), int(_number(end))
    if not 0 <= first <= last <= len(values):
        raise HclError(f"slice({first}, {last}) of {len(values)} items")
    return values[first:last]


def _tonumber(_: Evaluator, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _number(float(value))
        except ValueError as err:
            raise HclError(f"cannot convert {value!r} to a number") from err
    return _number(value)


def _flatten(_: Evaluator, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        out.extend(_flatten(_, value) if isinstance(value, list) else [value])
    return out


def _merge(_: Evaluator, *maps: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mapping in maps:
        out.update(mapping)
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda _, x: _number(abs(_number(x))),
    "alltrue": lambda _, xs: all(x is True for x in xs),
    "anytrue": lambda _, xs: any(x is True for x in xs),
    "base64decode": lambda _, s: base64.b64decode(s).decode("utf-8"),
    "base64encode": lambda _, s: base64.b64encode(s.encode("utf-8")).decode("ascii"),
    "ceil": lambda _, x: math.ceil(_number(x)),
    "coalesce": lambda _, *xs: next(x for x in xs if x is not None and x != ""),
    "concat": lambda _, *xs: [item for x in xs for item in x],
    "contains": lambda _, xs, x: x in xs,
    "distinct": lambda _, xs: list(dict.fromkeys(xs)),
    "fileset": lambda _, root, pattern: fileset(root, pattern),
    "flatten": _flatten,
    "floor": lambda _, x: math.floor(_number(x)),
    "join": lambda _, sep, xs: sep.join(_to_string(x) for x in xs),
    "keys": lambda _, m: sorted(m),
    "length": lambda _, x: len(x),
    "lower": lambda _, s: s.lower(),
    "max": lambda _, *xs: _number(max(_number(x) for x in xs)),
    "merge": _merge,
    "min": lambda _, *xs: _number(min(_number(x) for x in xs)),
    "pow": lambda _, x, y: _number(_number(x) ** _number(y)),
    "range": _range,
    "regex": _regex,
    "slice": _slice,
    "sort": lambda _, xs: sorted(_to_string(x) for x in xs),
    "split": lambda _, sep, s: s.split(sep),
    "sum": _sum,
    "tolist": lambda _, xs: list(xs),
    "tonumber": _tonumber,
    "toset": lambda _, xs: sorted(set(xs), key=str),
    "tostring": lambda _, x: _to_string(x),
    "trimspace": lambda _, s: s.strip(),
    "upper": lambda _, s: s.upper(),
}


# --- the evaluator -------------------------------------------------------------------------


@dataclass
class Evaluator:
    """Variables (defaults, overridden by ``variables``) and locals of one configuration."""

    config: TerraformConfig
    variables: Mapping[str, Any] = field(default_factory=dict)
    module_dir: Path = TERRAFORM_DIR
    _locals: dict[str, Any] = field(default_factory=dict)
    _evaluating: list[str] = field(default_factory=list)

    def variable(self, name: str) -> Any:
        if name in self.variables:
            return self.variables[name]
        declared = self.config.variables.get(name)
        if declared is None:
            raise HclError(f"undeclared variable var.{name}")
        if "default" not in declared:
            raise HclError(f"var.{name} has no default: pass it")
        return self.evaluate(declared["default"])

    def local(self, name: str) -> Any:
        if name not in self._locals:
            if name not in self.config.locals:
                raise HclError(f"undeclared local.{name}")
            if name in self._evaluating:
                raise HclError(f"local.{name} depends on itself")
            self._evaluating.append(name)
            try:
                self._locals[name] = self.evaluate(self.config.locals[name])
            finally:
                self._evaluating.pop()
        return self._locals[name]

    def template(self, text: str, *, escaped: bool) -> Node:
        """A node for a string's content with its ``${...}`` parts. ``escaped``: the text is
        as written between quotes (inside an expression); python-hcl2 gives top-level
        strings with their escapes already applied, except ``$${``."""
        decode = unescape if escaped else str
        parts: list[str | Node] = []
        literal, index = "", 0
        while index < len(text):
            if text.startswith("$${", index):
                literal, index = literal + "${", index + 3
            elif text.startswith("${", index):
                end = _closing_brace(text, index)
                if literal:
                    parts.append(decode(literal))
                    literal = ""
                parts.append(_Parser(self, text[index + 2 : end]).parse())
                index = end + 1
            else:
                literal, index = literal + text[index], index + 1
        if literal or not parts:
            parts.append(decode(literal))
        return _Template(parts)

    def evaluate(self, value: Any, scope: Scope | None = None) -> Any:
        """A parsed value (python-hcl2's: strings hold expressions) as Terraform computes it."""
        if isinstance(value, str):
            return self.template(value, escaped=False)(scope or {})
        if isinstance(value, dict):
            return {key: self.evaluate(item, scope) for key, item in value.items()}
        if isinstance(value, list):
            return [self.evaluate(item, scope) for item in value]
        return value

    def expression(self, text: str, scope: Scope | None = None) -> Any:
        """One bare expression (no ``${}``), for example ``local.tasks_last_attempt_s``."""
        return _Parser(self, text).parse()(scope or {})

    def validation_errors(self, name: str) -> list[str]:
        """The error messages of ``var.name``'s validations that reject its current value."""
        failed: list[str] = []
        for rule in self.config.variables[name].get("validation", []):
            try:
                accepted = self.evaluate(rule["condition"])
            except HclError as err:
                failed.append(f"{rule['error_message']} ({err})")
                continue
            if accepted is not True:
                failed.append(str(rule["error_message"]))
        return failed


def with_variables(config: TerraformConfig, **variables: Any) -> Evaluator:
    return Evaluator(config, dict(variables))
