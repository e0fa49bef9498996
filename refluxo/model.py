"""The data model: workflows, snapshots and the results they carry.

Every model reads and writes the wire shape of the TypeScript library Refluxo
(``@refluxo/core``): camelCase keys, times in epoch milliseconds. Python code uses
snake_case attribute names; both spellings are accepted on input, and
``model_dump(mode="json")`` produces camelCase, so snapshots move between the two
engines unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticSerializationError, core_schema, to_jsonable_python

from refluxo.context import EMPTY_CONTEXT, Context, MemoryContext
from refluxo.frozen import FrozenDict, FrozenList, freeze

__all__ = [
    "ABSENT",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_DEPTH",
    "MAX_OUTPUT_DEPTH",
    "Edge",
    "Node",
    "NodeResult",
    "RetryPolicy",
    "RetryState",
    "Snapshot",
    "SnapshotStatus",
    "StepResult",
    "WorkflowDefinition",
]

_M = TypeVar("_M", bound=BaseModel)

_WIRE = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    frozen=True,
    extra="ignore",
)


_KEEP_UNKNOWN = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    frozen=True,
    extra="allow",
)
"""For the snapshot and its results: keys this engine does not know are kept, as
``@refluxo/core`` keeps them (it spreads the objects it was given)."""

MAX_JSON_DEPTH: Final = 201
"""How deep a snapshot's JSON may nest, the snapshot object counting as one level: the
most pydantic's JSON parser reads (``Snapshot.model_validate_json``), so every snapshot
this engine writes can be read back by both codecs."""

MAX_OUTPUT_DEPTH: Final = MAX_JSON_DEPTH - 4
"""How deep a result's ``output`` may nest (197): inside the snapshot, the context, the
node's list and the result. An executor returning a deeper output fails the node."""

MAX_METADATA_DEPTH: Final = MAX_JSON_DEPTH - 2
"""How deep a value in a snapshot's ``metadata`` may nest (199)."""


def json_depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests as JSON (a scalar 0, ``[]`` 1), counted up to ``limit + 1``:
    enough to tell whether it exceeds ``limit``, without walking further down."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        for child in children:
            if isinstance(child, Mapping | list | tuple):
                stack.append((child, depth + 1))
    return deepest


class SnapshotTooDeep(ValueError):
    """A value nests deeper than a snapshot can hold (see :data:`MAX_JSON_DEPTH`)."""


def as_output(output: Any, what: str = "the output") -> Any:
    """``output`` as a snapshot holds it, read-only: itself frozen when it is JSON data
    already, else its JSON form as pydantic writes it (a model or a dataclass as its
    fields, a date or a ``Decimal`` as text, a set or a tuple as a list, an enum as its
    value, bytes as UTF-8 text, any mapping as a dict), so that this run's expressions and
    executors read exactly what a snapshot written and read back holds, and no later node
    can change it (frozen as node data is: :func:`~refluxo.frozen.thaw` gives a mutable
    copy).

    Raises:
        TypeError: it holds what has no JSON form (an object, a function, bytes that are not
            UTF-8, ``NaN`` or an infinity, which ``JSON.stringify`` would turn into ``null``),
            a key that is not a string, or two keys that become the same string, named with
            where it is.
        SnapshotTooDeep: it nests deeper than :data:`MAX_OUTPUT_DEPTH` (or holds itself).
        ValueError: a string in it holds a lone UTF-16 surrogate (no UTF-8 text holds it).
    """
    try:
        return _held(output, 0, what, output)
    except _NotJsonValue:
        pass
    converted = _json_form(output, what, output, 0)
    return _held(converted, 0, what, converted)


def _held(value: Any, depth: int, what: str, root: Any) -> Any:
    """``value`` checked and frozen in one walk (the step's usual case: a small plain
    dict): plain dicts with plain string keys, lists, strings, finite numbers, booleans and
    ``None`` only; anything else raises :class:`_NotJsonValue` (converted by the caller, or
    refused). A frozen container whose items need no change is returned as it is (node
    data an executor passes on)."""
    if depth >= MAX_OUTPUT_DEPTH:  # a value in the deepest container counts as a level too
        _too_deep(what)
    kind = type(value)
    if kind is str:
        if not value.isascii():
            _check_text(value)
        return value
    if kind is int:
        if value.bit_length() > _MAX_INT_BITS:
            digits = int(value.bit_length() * 0.30103) + 1
            _refuse_output(what, root, value, f"an integer of about {digits} digits")
        return value
    if kind in _SCALAR_TYPES or value is None:
        return value
    if kind is float:
        if value - value != 0.0:
            _refuse_value(what, value)
        return value
    if kind in _DICT_TYPES:
        items: dict[str, Any] = {}
        same = kind is FrozenDict
        for key, child in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    _refuse_output(what, root, value, f"a key {key!r} that is not a string")
                _refuse_value(what, value)
            if not key.isascii():
                _check_text(key)
            held = _held(child, depth + 1, what, root)
            same = same and held is child
            items[key] = held
        if same:
            return value
        frozen = FrozenDict()
        dict.update(frozen, items)
        return frozen
    if kind in _LIST_TYPES:
        held_items = [_held(child, depth + 1, what, root) for child in value]
        if kind is FrozenList and all(a is b for a, b in zip(held_items, value, strict=True)):
            return value
        frozen_list = FrozenList()
        list.extend(frozen_list, held_items)
        return frozen_list
    _refuse_value(what, value)


def _too_deep(what: str) -> NoReturn:
    raise SnapshotTooDeep(
        f"{what} nests deeper than {MAX_OUTPUT_DEPTH} levels (or holds itself): a snapshot "
        f"holding it could not be read back (snapshot JSON nests at most {MAX_JSON_DEPTH} "
        "levels)"
    )


class _NotJsonValue(TypeError):
    """A value of a type JSON has no place for as it is (perhaps one with a JSON form)."""


def _json_form(item: Any, what: str, root: Any, depth: int) -> Any:
    kind = type(item)
    if item is None or kind in _LEAF_TYPES:
        return item
    if kind is float or isinstance(item, float):
        number = float(item)
        if number - number != 0.0:  # JSON.stringify would write null: data lost, refused
            _refuse_output(what, root, item, f"the number {number!r}")
        return number
    if depth > MAX_OUTPUT_DEPTH:
        _too_deep(what)
    if isinstance(item, str):
        return str.__str__(item)  # an enum's or a subclass's text, as JSON writes it
    if isinstance(item, int):
        return int(item)
    if isinstance(item, Mapping):
        converted: dict[str, Any] = {}
        for key, child in item.items():
            if not isinstance(key, str):
                _refuse_output(what, root, item, f"a key {key!r} that is not a string")
            text = str.__str__(key)
            if text in converted:
                _refuse_output(what, root, item, f"two keys read as {text!r}")
            converted[text] = _json_form(child, what, root, depth + 1)
        return converted
    if isinstance(item, list | tuple | set | frozenset):
        return [_json_form(child, what, root, depth + 1) for child in item]
    if isinstance(item, BaseModel):
        return _json_form(item.model_dump(), what, root, depth + 1)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        fields = {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}
        return _json_form(fields, what, root, depth + 1)
    try:
        converted_leaf = to_jsonable_python(item)
    except (PydanticSerializationError, ValueError, TypeError):
        _refuse_output(what, root, item, f"a value of type {type(item).__name__!r}")
    if converted_leaf is item:
        _refuse_output(what, root, item, f"a value of type {type(item).__name__!r}")
    return _json_form(converted_leaf, what, root, depth + 1)


def _refuse_value(what: str, culprit: Any) -> NoReturn:
    """Not JSON as it is: the caller converts it (where it is is told only if that fails)."""
    raise _NotJsonValue(f"{what} holds a value of type {type(culprit).__name__!r}")


def _refuse_output(what: str, output: Any, culprit: Any, problem: str) -> NoReturn:
    where = _path_to(output, culprit)
    place = f" (at {where})" if where else ""
    raise TypeError(
        f"{what} holds {problem}{place}, which has no JSON form: return JSON data (dicts "
        "with string keys, lists, str, numbers, bool, None) or what pydantic writes as JSON "
        "(models, dataclasses, dates, sets...)"
    )


def _path_to(root: Any, culprit: Any) -> str:
    """Where ``culprit`` sits in ``root`` (``items[2].when``), found by identity."""
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        item, path = stack.pop()
        if item is culprit:
            return path.lstrip(".")
        if isinstance(item, Mapping):
            stack.extend((child, f"{path}.{key}") for key, child in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return ""


def _check_text(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise ValueError(
            f"the output holds a lone UTF-16 surrogate ({text[error.start]!r}) in a string: "
            "a snapshot is written as UTF-8, which cannot hold it"
        ) from None


def _omit_none(value: object) -> bool:
    return value is None


class _Absent:
    """The type of :data:`ABSENT`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
"""JavaScript's ``undefined`` where the wire form must tell it from ``null``: a value left
out. ``StepResult()`` (no data) leaves the result's ``output`` out, as ``@refluxo/core``
does for an executor returning ``{}``; Python code reading the output gets ``None``."""

_SCALAR_TYPES = frozenset({bool, int, _Absent})
"""Besides ``str``, ``float`` (finite only) and ``None``: the leaves an output holds as
they are, :data:`ABSENT` (``undefined``: left out of an object, ``null`` in an array)
included. Exact types: a subclass (an ``IntEnum``) is converted to the plain value a
snapshot read back holds."""
_LEAF_TYPES = _SCALAR_TYPES | {str}
_MAX_INT_BITS = 13_000
"""About 3,900 decimal digits: past Python's and pydantic's JSON readers' 4,300 digits, a
snapshot holding the integer could not be read back."""
_DICT_TYPES: frozenset[type] = frozenset((dict, FrozenDict))
_LIST_TYPES: frozenset[type] = frozenset((list, FrozenList))


class SnapshotStatus(StrEnum):
    """Where a run stands. Members compare equal to their plain strings (``"active"``...)."""

    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Completed and failed runs never execute another step."""
        return self in (SnapshotStatus.COMPLETED, SnapshotStatus.FAILED)


class Edge(BaseModel):
    """A connection from ``source`` to ``target``; ``source_handle`` selects a branch."""

    model_config = _WIRE

    id: str | None = Field(default=None, exclude_if=_omit_none)
    source: str
    target: str
    source_handle: str | None = Field(default=None, exclude_if=_omit_none)

    @property
    def null_handle(self) -> bool:
        """Whether the edge was given ``sourceHandle: null`` (not merely no handle).

        ``@refluxo/core`` compares handles with ``===``: an executor returning no handle
        (``undefined``) never takes such an edge, so neither does this engine; graph editors
        often write it. The wire form keeps the ``null``.
        """
        return self.source_handle is None and "source_handle" in self.model_fields_set

    @model_serializer(mode="wrap")
    def _keep_null_handle(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        if self.null_handle and isinstance(data, dict):
            # by_alias is None when not given: the model's default, which is by alias.
            data["source_handle" if info.by_alias is False else "sourceHandle"] = None
        return data


class Node(BaseModel):
    """One unit of work: its ``type`` names a node definition; ``data`` is its static input."""

    model_config = _WIRE

    id: str
    type: str
    data: Any = Field(default_factory=dict)
    metadata: Any = Field(default=None, exclude_if=_omit_none)


class WorkflowDefinition(BaseModel):
    """The graph: nodes and the edges between them.

    Node ids must be unique. Edges may still point at unknown nodes: like the TypeScript
    engine, that is reported when execution reaches them (and by ``refluxo validate``).
    """

    model_config = _WIRE

    nodes: list[Node]
    edges: list[Edge] = Field(default_factory=list)

    @field_validator("nodes")
    @classmethod
    def _unique_node_ids(cls, nodes: list[Node]) -> list[Node]:
        seen: set[str] = set()
        for node in nodes:
            if node.id in seen:
                raise ValueError(f"duplicate node id {node.id!r}")
            _check_name(node.id, "node id")
            seen.add(node.id)
        return nodes

    @field_validator("edges")
    @classmethod
    def _writable_handles(cls, edges: list[Edge]) -> list[Edge]:
        for edge in edges:
            if edge.source_handle is not None:
                _check_name(edge.source_handle, "sourceHandle")
        return edges


def _check_name(name: str, what: str) -> None:
    """A node id keys the run's context and is written in every snapshot as UTF-8: one with
    a lone UTF-16 surrogate could not be written (or would come back as another key)."""
    try:
        name.encode()
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{what} {name!r} holds a lone UTF-16 surrogate ({name[error.start]!r}): "
            "a snapshot is written as UTF-8, which cannot hold it"
        ) from None


def default_start(node_ids: Sequence[str], edge_targets: Collection[str]) -> str:
    """Where a run starts when no start node is named.

    The only node without incoming edges, else (none or several) the first node.
    """
    roots = [node_id for node_id in node_ids if node_id not in edge_targets]
    return roots[0] if len(roots) == 1 else node_ids[0]


class RetryPolicy(BaseModel):
    """How often and how fast a failing node is retried.

    ``max_attempts`` counts retries after the first failure is recorded: the default error
    handler retries while ``attempt <= max_attempts``. ``interval`` is in milliseconds.
    ``backoff`` is ``"exponential"`` (``interval * 2 ** (attempt - 1)``) or anything else,
    which is fixed: ``@refluxo/core`` types it as any string and treats every value but
    ``"exponential"`` as fixed, so a workflow written for it (``"linear"``...) runs here too.
    Numbers may be given as numeric strings, as ``Number(...)`` reads them there.
    """

    model_config = _WIRE

    max_attempts: int | float
    interval: int | float
    backoff: str = "fixed"


class NodeResult(BaseModel):
    """One execution of a node: its output, when, which attempt, and the error if it failed.

    An output may be left out, as ``@refluxo/core`` leaves it out when an executor returns
    no ``data`` (``undefined``, which ``JSON.stringify`` drops): ``NodeResult(timestamp=1)``
    or a decoded result without ``output`` reads ``output`` as ``None`` and writes no
    ``output`` key; an explicit ``None`` (``null``, as on every failed attempt) is written.
    """

    model_config = _KEEP_UNKNOWN

    output: Any = None
    timestamp: int = Field(strict=True)
    error: str | None = Field(default=None, exclude_if=_omit_none)
    attempt: int = Field(default=1, strict=True)

    def __init__(
        self,
        output: Any = ABSENT,
        timestamp: int | None = None,
        attempt: int | None = None,
        /,
        **data: Any,
    ) -> None:
        if output is not ABSENT:
            data["output"] = output
        if timestamp is not None:
            data["timestamp"] = timestamp
        if attempt is not None:
            data["attempt"] = attempt
        elif "attempt" not in data:
            data["attempt"] = 1  # built in Python: the first attempt, written out
        super().__init__(**data)

    # Only maps positional arguments to keywords: decoding (model_validate*) may skip it and
    # stay entirely in pydantic-core, which keeps loading a long history fast.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @property
    def has_attempt(self) -> bool:
        """Whether ``attempt`` is on the wire: a result decoded without one (which
        ``@refluxo/core`` would keep as it is) reads as attempt 1 and writes none."""
        return "attempt" in self.__dict__

    @property
    def has_output(self) -> bool:
        """Whether ``output`` is on the wire (``null`` included), not left out."""
        return "output" in self.__dict__

    # A left-out output is a key missing from the instance's fields: pydantic-core then
    # writes nothing for it, at no cost per result (a serializer hook would triple the
    # cost of dumping a history), and reading it falls through to ``__getattr__``: None.
    @model_validator(mode="after")
    def _leave_out_absent_output(self, info: ValidationInfo) -> NodeResult:
        fields_set = self.__pydantic_fields_set__
        if "output" not in fields_set:
            self.__dict__.pop("output", None)
        elif info.mode == "python":
            # Decoded JSON is bounded by the parser; Python values are checked here, and
            # held in their JSON form (what the snapshot, written and read back, holds).
            self.__dict__["output"] = as_output(self.__dict__["output"])
        else:  # read back: as read-only as when its step recorded it
            self.__dict__["output"] = freeze(self.__dict__["output"])
        if "attempt" not in fields_set:
            self.__dict__.pop("attempt", None)
        return self

    if not TYPE_CHECKING:  # for mypy, `output` and `attempt` are the declared fields

        def __getattr__(self, name: str) -> Any:
            if name == "output":
                return None
            if name == "attempt":
                return 1
            return super().__getattr__(name)


class RetryState(BaseModel):
    """Which node is being retried, how many attempts it has had, and when to try again.

    ``next_retry_at`` is in epoch milliseconds and may be fractional: ``@refluxo/core``
    writes ``Date.now() + delay`` unrounded (an interval of 1.5 gives ``...001.5``).
    """

    model_config = _WIRE

    node_id: str
    attempts: int
    next_retry_at: int | float | None = Field(default=None, exclude_if=_omit_none)

    def __init__(
        self,
        node_id: str | None = None,
        attempts: int | None = None,
        next_retry_at: int | float | None = None,
        /,
        **data: Any,
    ) -> None:
        if node_id is not None:
            data["node_id"] = node_id
        if attempts is not None:
            data["attempts"] = attempts
        if next_retry_at is not None:
            data["next_retry_at"] = next_retry_at
        super().__init__(**data)

    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}


_WITHOUT_OUTPUT: set[str] = set(NodeResult.model_fields) - {"output"}


def trusted(model: type[_M], fields: dict[str, Any], extra: dict[str, Any] | None = None) -> _M:
    """Build ``model`` from a complete dict of already-valid field values, skipping validation.

    The engine builds a snapshot, a result and sometimes a retry state on every step from
    values it produced itself; validating them again would double the cost of a step. Like
    ``model_construct`` without its per-field default handling: ``fields`` must hold every
    field. A :class:`NodeResult` whose ``output`` is :data:`ABSENT` leaves ``output`` out
    of the wire form (and reads it as ``None``). ``extra``: the unknown keys a snapshot or
    result carries (see :attr:`BaseModel.model_extra`), kept through the copy.
    """
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", fields)
    # One shared set per model: frozen models never change it, and copies copy it first.
    fields_set = _ALL_FIELDS.get(model)
    if fields_set is None:
        fields_set = _ALL_FIELDS[model] = set(model.model_fields)
    if model is NodeResult and fields["output"] is ABSENT:
        del fields["output"]
        fields_set = _WITHOUT_OUTPUT
    object.__setattr__(instance, "__pydantic_fields_set__", fields_set)
    if extra is None and model.model_config.get("extra") == "allow":
        extra = {}
    object.__setattr__(instance, "__pydantic_extra__", extra)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


class _ContextSchema:
    """Pydantic glue for :class:`Context`: decoded from and encoded to ``{id: [result]}``."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        plain = handler.generate_schema(dict[str, list[NodeResult]])
        decoded = core_schema.no_info_after_validator_function(MemoryContext.from_mapping, plain)
        return core_schema.json_or_python_schema(
            json_schema=decoded,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(Context), decoded]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                _context_to_dict, return_schema=plain
            ),
        )


def _context_to_dict(context: Mapping[str, Any]) -> dict[str, list[NodeResult]]:
    return {key: list(results) for key, results in context.items()}


class Snapshot(BaseModel):
    """The complete, serializable state of one run between two steps.

    ``version`` grows by one on every transition: it is the optimistic-lock token a store
    compares before committing. ``context`` holds every node's results (see
    :class:`~refluxo.context.Context`).
    """

    model_config = _KEEP_UNKNOWN

    workflow_id: str
    status: SnapshotStatus
    current_node_id: str | None
    context: Annotated[Context, _ContextSchema()] = Field(default=EMPTY_CONTEXT)
    version: int = 0
    # In the order @refluxo/core writes them (its initial snapshot's order), so that both
    # engines write a snapshot's keys alike.
    metadata: dict[str, Any] = Field(default_factory=dict)
    last_started_at: int | None = Field(default=None, exclude_if=_omit_none)
    total_execution_time: int | None = Field(default=None, exclude_if=_omit_none)
    retry_state: RetryState | None = Field(default=None, exclude_if=_omit_none)

    @model_validator(mode="after")
    def _bounded_metadata(self, info: ValidationInfo) -> Snapshot:
        # Decoded JSON is bounded by the parser; Python values are checked here.
        depth_limit = MAX_METADATA_DEPTH + 1  # the metadata object itself is one level
        if info.mode == "python" and json_depth(self.metadata, depth_limit) > depth_limit:
            raise SnapshotTooDeep(
                f"a metadata value nests deeper than {MAX_METADATA_DEPTH} levels: the "
                f"snapshot could not be read back (its JSON nests at most {MAX_JSON_DEPTH})"
            )
        return self

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Snapshot:
        """Read a wire snapshot, validating every result (see :meth:`from_json` for the
        fast, lazy reader). Raises pydantic's ``ValidationError``, or
        :class:`SnapshotTooDeep` when the JSON nests deeper than :data:`MAX_JSON_DEPTH`,
        or ``ValueError`` naming a lone UTF-16 surrogate (both codecs refuse the same
        documents, in the same words)."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as error:
            raise json_error(error) from error

    def to_json(self) -> bytes:
        """This snapshot as wire JSON (UTF-8), fast: for storing a run's snapshot whole.

        Equal as JSON to :meth:`model_dump_json` (the keys in another order). Results read
        by :meth:`from_json` and unchanged since are written back as the bytes they were
        read from, so a store-load-step loop encodes only each step's new result. See
        :mod:`refluxo.snapshot_json`.
        """
        from refluxo.snapshot_json import snapshot_to_json

        return snapshot_to_json(self)

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> Snapshot:
        """Read a wire snapshot (this engine's or ``@refluxo/core``'s), fast.

        Unlike :meth:`model_validate_json`, the context's results are not all validated on
        load: each node's results are validated when first read (by a step reaching the
        node, an executor, an expression, or a dump), and results nobody reads pass through
        :meth:`to_json` as they came. Everything else, and the well-formedness of the whole
        JSON, is checked here. Raises :class:`ValueError`. Where an invalid result is
        refused, and how to check a whole history up front: :mod:`refluxo.snapshot_json`.
        """
        from refluxo.snapshot_json import snapshot_from_json

        return snapshot_from_json(data)


def json_error(error: ValidationError) -> ValueError:
    """``error`` in plain words when it is about the JSON itself (too deep, a lone
    surrogate); else ``error`` unchanged."""
    problems = error.errors(include_url=False, include_input=False)
    if len(problems) == 1 and problems[0]["type"] == "json_invalid":
        message = str(problems[0]["msg"])
        if "recursion limit" in message:
            return SnapshotTooDeep(
                f"snapshot JSON nests deeper than {MAX_JSON_DEPTH} levels "
                f"(an output at most {MAX_OUTPUT_DEPTH}, a metadata value at most "
                f"{MAX_METADATA_DEPTH}): {message}"
            )
        if "surrogate" in message or "hex escape" in message:
            return ValueError(LONE_SURROGATE + f": {message}")
    return error


LONE_SURROGATE = (
    "snapshot JSON holds a lone UTF-16 surrogate escape (such as \\ud800) in a string: "
    "JSON.parse accepts it, but a Python string cannot be written as UTF-8 with one, "
    "so refluxo refuses the snapshot"
)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What an executor returns.

    Args:
        data: the node's output, appended to the context. Without it (:data:`ABSENT`) the
            result has no ``output`` on the wire (reads as ``None``), as ``@refluxo/core``
            writes for an executor returning ``{}``; ``StepResult(None)`` writes ``null``.
        pause: stop the run after this node; it re-runs with the resume payload.
        next_handle: the edge handle to follow (``None`` follows the edge without a handle).
        resume_at: with ``pause``, epoch milliseconds at which a durable runtime resumes the
            run by itself (a durable timer). The engine only records it in
            ``metadata["resumeAt"]``.
    """

    data: Any = ABSENT
    pause: bool = False
    next_handle: str | None = None
    resume_at: int | None = None
