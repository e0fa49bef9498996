"""The API's wire contract: request and response models, camelCase on the wire.

The dispatcher validates requests with these models, handlers answer with them, the
clients build their views from them and the OpenAPI document publishes their JSON
schemas: what is accepted, returned and documented is one declaration.

Request models are strict, as the API always was: no text for a number, no ``true`` for
an integer, no ``null`` for a field that may only be left out. Query models read text,
so their integers are parsed explicitly (see :data:`_FROM_TEXT`) and nothing else is
coerced.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from refluxo.api.run_json import LISTED_CHILDREN, children_view, parent_view
from refluxo.model import SnapshotStatus, WorkflowDefinition
from refluxo.runtime.app import WorkflowSpec
from refluxo.runtime.dispatcher import Outcome
from refluxo.runtime.ids import RUN_ID_PATTERN, RUN_ID_RULE
from refluxo.runtime.ports import RunRecord, TimelineEntry

MAX_INTEGER = 2**62
"""The largest integer a parameter or body field accepts (below SQLite's 64-bit range)."""

MAX_PAGE = 200
"""The most runs one page lists."""

MAX_CURSOR_LENGTH = 512
"""The longest listing cursor accepted. The cursors the stores issue are under 210
characters (a time and a run id of at most 128); the bound also keeps whatever a crafted
cursor decodes to far shallower than any parser's recursion (:data:`MAX_JSON_DEPTH`)."""

_QUERY_INTEGER = re.compile(r"-?[0-9]{1,20}")
"""An integer as a query parameter writes it: ASCII digits, an optional minus sign. Not
``int()``'s grammar, which also reads other scripts' digits (U+0665, U+FF15), ``" 5"``, ``"+5"``
and ``"1_0"``."""

RUN_ID_SCHEMA_PATTERN = f"^(?:{RUN_ID_PATTERN.pattern.removeprefix('^').removesuffix('$')})$"
"""The run-id pattern as JSON Schema reads it: anchored (a JSON Schema pattern searches)."""

_REQUEST = ConfigDict(alias_generator=to_camel, strict=True, frozen=True, extra="ignore")
_PARAMETERS = ConfigDict(alias_generator=to_camel, frozen=True, extra="ignore")
_VIEW = ConfigDict(
    alias_generator=to_camel,
    validate_by_name=True,
    validate_by_alias=True,
    serialize_by_alias=True,
    frozen=True,
)


# -- field types --------------------------------------------------------------------------


def _refuse_null(value: object) -> object:
    # Only an explicit value reaches a validator: a field left out takes its default (None).
    if value is None:
        raise PydanticCustomError("not_null", "must not be null")
    return value


def _parse_query_int(value: object) -> object:
    if isinstance(value, str):
        if not _QUERY_INTEGER.fullmatch(value):
            raise PydanticCustomError("not_an_integer", "must be an integer")
        return int(value)
    return value


def _check_run_id(value: str) -> str:
    # fullmatch: the pattern's "$" also matches before a trailing newline.
    if not RUN_ID_PATTERN.fullmatch(value):
        raise PydanticCustomError("run_id", RUN_ID_RULE)
    return value


Count = Annotated[int, Field(ge=0, le=MAX_INTEGER)]
"""A version, time or counter: a non-negative integer the stores can hold."""

OmittableText = Annotated[
    str | SkipJsonSchema[None],
    BeforeValidator(_refuse_null),
]
"""A string that may be left out (``None``) but not sent as ``null``.

Its schema is a plain string: ``SkipJsonSchema`` keeps ``null`` out of the type, and the
document leaves out a ``null`` default (:mod:`refluxo.api.openapi`)."""

OmittableCount = Annotated[
    Count | SkipJsonSchema[None],
    BeforeValidator(_refuse_null),
]
"""A :data:`Count` that may be left out (``None``) but not sent as ``null``."""

RunId = Annotated[
    str,
    AfterValidator(_check_run_id),
    Field(json_schema_extra={"pattern": RUN_ID_SCHEMA_PATTERN}),
]
"""A caller-chosen run id (:data:`~refluxo.runtime.ids.RUN_ID_PATTERN`)."""

_FROM_TEXT = BeforeValidator(_parse_query_int)
"""Reads a query parameter's text as an integer (ASCII digits only); put it after the
bounds, so that they apply to the integer (and the document shows them)."""

Cursor = Annotated[
    str | SkipJsonSchema[None],
    BeforeValidator(_refuse_null),
    Field(max_length=MAX_CURSOR_LENGTH),
]
"""A listing cursor, as issued by a previous page (opaque, bounded)."""


# -- requests -----------------------------------------------------------------------------


class StartRequest(BaseModel):
    """Start a run of ``workflow``; a ``runId`` makes the start idempotent."""

    model_config = _REQUEST

    workflow: str
    input: Any = Field(default=None, description="the first node's external payload")
    run_id: Annotated[
        RunId | SkipJsonSchema[None],
        BeforeValidator(_refuse_null),
        Field(description="makes the start idempotent"),
    ] = None


class ResumeRequest(BaseModel):
    """Resume a paused run with ``payload``, only at ``version`` when given."""

    model_config = _REQUEST

    payload: Any = Field(
        description="the paused node's external payload (required: null to resume without one)"
    )
    version: OmittableCount = Field(
        default=None, description="resume only if the run is at this version"
    )


class CancelRequest(BaseModel):
    """Cancel a run that has not ended; it fails with ``reason``."""

    model_config = _REQUEST

    reason: OmittableText = None


class StepRequest(BaseModel):
    """One delivery from the scheduler: run ``runId`` at ``version``, due at ``dueAt``.

    Every run id the runtime schedules is a valid one (callers' ids are checked at the
    start, and the runtime's own, random and child ids, are made valid): another is
    refused as in every other body."""

    model_config = _REQUEST

    run_id: RunId
    version: Count
    due_at: Count = 0
    hop: Count = 0


MAX_RECONCILE_LIMIT = 1_000
"""The most runs one reconcile request examines (it must answer within a request's
deadline: each rescheduled run is one call to the scheduler)."""

MAX_GRACE_S = 86_400
"""The longest grace period a reconcile request may give (a day)."""


class ReconcileRequest(BaseModel):
    """Schedule again the runs whose next step is overdue: at most ``limit`` of them, from
    ``cursor`` (a previous answer's ``nextCursor``) on, overdue by more than ``graceS``."""

    model_config = _REQUEST

    limit: Annotated[int, Field(ge=1, le=MAX_RECONCILE_LIMIT)] = Field(
        default=500, description="the most runs examined"
    )
    cursor: Cursor = Field(default=None, description="a previous answer's nextCursor")
    grace_s: Annotated[
        Annotated[float, Field(ge=0, le=MAX_GRACE_S, allow_inf_nan=False)] | SkipJsonSchema[None],
        BeforeValidator(_refuse_null),
    ] = Field(
        default=None,
        description="seconds a step must be overdue (default: the server's "
        "REFLUXO_RECONCILE_GRACE_S)",
    )


class RunPath(BaseModel):
    """The run a path names. An id outside the pattern names no run: 404, as any other."""

    model_config = _PARAMETERS

    run_id: Annotated[str, Field(json_schema_extra={"pattern": RUN_ID_SCHEMA_PATTERN})]


class ListRunsQuery(BaseModel):
    """A page of runs, newest first, optionally of one status."""

    model_config = _PARAMETERS

    status: SnapshotStatus | SkipJsonSchema[None] = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE), _FROM_TEXT] = 50
    cursor: Cursor = None


MAX_CHILDREN_PAGE = 500
"""The most child runs one page lists (each is one read of the store)."""


class ChildrenQuery(BaseModel):
    """Which child runs to list: those after an index (-1: from the first), at most a limit
    of indices (a child not started yet is left out)."""

    model_config = _PARAMETERS

    after: Annotated[int, Field(ge=-1, le=MAX_INTEGER), _FROM_TEXT] = -1
    limit: Annotated[int, Field(ge=1, le=MAX_CHILDREN_PAGE), _FROM_TEXT] = 100


class TimelineQuery(BaseModel):
    """Which page of a run's timeline to include: entries after a ``seq``, at most a limit."""

    model_config = _PARAMETERS

    timeline_after: Annotated[int, Field(ge=-1, le=MAX_INTEGER), _FROM_TEXT] = -1
    timeline_limit: Annotated[int, Field(ge=0, le=1000), _FROM_TEXT] = 100


# -- responses ----------------------------------------------------------------------------


def _is_none(value: object) -> bool:
    return value is None


class TimelineEntryView(BaseModel):
    """One committed result of a run, in commit order."""

    model_config = _VIEW

    seq: int
    node_id: str
    output: Any = None
    timestamp: int
    error: str | None = Field(default=None, exclude_if=_is_none)
    attempt: int

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineEntryView:
        result = entry.result
        return cls(
            seq=entry.seq,
            node_id=entry.node_id,
            output=result.output,
            timestamp=result.timestamp,
            error=result.error,
            attempt=result.attempt,
        )


class RunView(BaseModel):
    """A run as the API shows it: its head, without the results."""

    model_config = _VIEW

    run_id: str
    workflow: str
    definition_version: str = Field(description="sha256 of the workflow's JSON")
    status: SnapshotStatus
    version: int
    current_node_id: str | None
    created_at: int = Field(description="epoch milliseconds")
    updated_at: int = Field(description="epoch milliseconds")
    result_count: int
    snapshot: dict[str, Any] = Field(
        description="The wire snapshot (camelCase), without its context: read the results "
        "through the timeline."
    )

    @classmethod
    def fields_of(cls, record: RunRecord) -> dict[str, Any]:
        """The view's fields for ``record`` (by name), for this view and its extensions."""
        return {
            "run_id": record.run_id,
            "workflow": record.workflow,
            "definition_version": record.definition_version,
            "status": record.status,
            "version": record.version,
            "current_node_id": record.snapshot.current_node_id,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "result_count": record.result_count,
            "snapshot": record.snapshot.model_dump(mode="json", exclude={"context"}),
        }

    @classmethod
    def of(cls, record: RunRecord) -> RunView:
        return cls(**cls.fields_of(record))


class ParentView(BaseModel):
    """The run that started this one: its id, the node that did, this run's index there."""

    model_config = _VIEW

    run_id: str
    node: str
    index: int = Field(description="this run's place among its siblings, from 0")


class ChildrenView(BaseModel):
    """The child runs of a run's latest ``map``, ``parallel`` or ``call`` node."""

    model_config = _VIEW

    node: str | None = Field(description="the node that started them")
    kind: str | None = Field(description="map, parallel or call")
    count: int = Field(description="how many child runs the node started")
    concurrency: int | None = Field(description="how many may run at once")
    failure: str | None = Field(description="fail_fast or collect")
    waiting: bool = Field(description="whether the run still waits for them")
    ended: int | None = Field(
        description="how many ended, once joined (null while waiting, and after a cancel)"
    )
    failed: int | None = Field(
        description="how many failed, once joined (null while waiting, and after a cancel)"
    )
    cancelled: bool = Field(
        description="whether the run was cancelled while it waited (its children with it)"
    )
    run_ids: list[str] = Field(
        description=f"the ids of the first {LISTED_CHILDREN} (by index; one not started "
        "yet has no run yet): GET /runs/{runId}/children lists them all with their states"
    )


class RunDetailView(RunView):
    """A run, the runs it is linked to, and a page of its timeline."""

    parent: ParentView | None = Field(
        description="the run that started this one as a child run, or null"
    )
    children: ChildrenView | None = Field(
        description="the child runs this run started last, or null if it never started any"
    )
    timeline: list[TimelineEntryView]

    @classmethod
    def of_run(cls, record: RunRecord, timeline: list[TimelineEntry]) -> RunDetailView:
        entries = [TimelineEntryView.of(entry) for entry in timeline]
        metadata = record.snapshot.metadata
        parent = parent_view(metadata)
        children = children_view(record.run_id, record.status.value, metadata)
        return cls(
            **cls.fields_of(record),
            parent=None if parent is None else ParentView.model_validate(parent),
            children=None if children is None else ChildrenView.model_validate(children),
            timeline=entries,
        )


class ChildRunView(BaseModel):
    """A child run, as its parent lists it."""

    model_config = _VIEW

    index: int = Field(description="its place among its siblings, from 0")
    run_id: str
    status: SnapshotStatus
    node: str | None = Field(description="its current node")
    updated_at: int = Field(description="epoch milliseconds")

    @classmethod
    def of(cls, index: int, record: RunRecord) -> ChildRunView:
        return cls(
            index=index,
            run_id=record.run_id,
            status=record.status,
            node=record.snapshot.current_node_id,
            updated_at=record.updated_at,
        )


class ChildRunPageView(BaseModel):
    """A page of a run's child runs (of its latest wait), by index; ``next`` is the
    ``after`` of the next page, null on the last."""

    model_config = _VIEW

    children: list[ChildRunView]
    next: int | None


class RunPageView(BaseModel):
    """A page of runs, newest update first; ``nextCursor`` is null on the last page."""

    model_config = _VIEW

    runs: list[RunView]
    next_cursor: str | None


class GraphNodeView(BaseModel):
    """A node of a run's graph: its id and type (its static data stays on the server)."""

    model_config = _VIEW

    id: str
    type: str


class GraphEdgeView(BaseModel):
    """An edge of a run's graph; ``sourceHandle`` names the branch that follows it."""

    model_config = _VIEW

    source: str
    target: str
    source_handle: str | None


class RunGraphView(BaseModel):
    """The graph a run executes (the definition it started with), for drawing it."""

    model_config = _VIEW

    run_id: str
    workflow: str
    definition_version: str = Field(description="sha256 of the workflow's JSON")
    start: str
    nodes: list[GraphNodeView]
    edges: list[GraphEdgeView]

    @classmethod
    def of(cls, record: RunRecord, wire: dict[str, Any]) -> RunGraphView:
        """The graph of ``record``, from its stored definition ``wire`` (with ``start``)."""
        definition = WorkflowDefinition.model_validate(wire)
        return cls(
            run_id=record.run_id,
            workflow=record.workflow,
            definition_version=record.definition_version,
            start=str(wire.get("start") or definition.nodes[0].id),
            nodes=[GraphNodeView(id=node.id, type=node.type) for node in definition.nodes],
            edges=[
                GraphEdgeView(source=e.source, target=e.target, source_handle=e.source_handle)
                for e in definition.edges
            ],
        )


class PageView(RootModel[str]):
    """A page or static file of the run inspector (not JSON, never in the document)."""


class WorkflowView(BaseModel):
    """A registered workflow."""

    model_config = _VIEW

    name: str
    version: str = Field(description="sha256 of the workflow's JSON")
    start: str
    nodes: int = Field(description="how many nodes it has")

    @classmethod
    def of(cls, spec: WorkflowSpec) -> WorkflowView:
        return cls(
            name=spec.name, version=spec.version, start=spec.start, nodes=len(spec.definition.nodes)
        )


class WorkflowsView(BaseModel):
    """The workflows the app registers."""

    model_config = _VIEW

    workflows: list[WorkflowView]


class HealthView(BaseModel):
    """The process is alive (nothing else is checked)."""

    model_config = _VIEW

    status: Literal["ok"]


class StepOutcomeView(BaseModel):
    """What a delivery did, and how many steps it committed."""

    model_config = _VIEW

    outcome: Outcome
    steps: int


class ReconcileView(BaseModel):
    """What a reconcile request did; ``nextCursor`` continues it (null: nothing left)."""

    model_config = _VIEW

    examined: int = Field(description="overdue runs looked at")
    rescheduled: int = Field(description="runs whose next step was scheduled again")
    next_cursor: str | None


class DocumentView(RootModel[dict[str, Any]]):
    """The OpenAPI document."""


class ErrorDetail(BaseModel):
    """What went wrong: a stable ``code`` for programs, a ``message`` for people."""

    model_config = _VIEW

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message"}}``."""

    model_config = _VIEW

    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message))
