"""What each endpoint does, once its caller is authenticated and its input validated.

Handlers only translate: a validated request model to a :class:`RunService` call, its
result to a response model. They know no HTTP status beyond their route's successes;
domain errors propagate to the dispatcher, which maps them in :mod:`refluxo.api.errors`.
"""

from __future__ import annotations

import logging

from refluxo.api import inspector
from refluxo.api.contract import Call, Content, Reply
from refluxo.api.models import (
    CancelRequest,
    ChildrenQuery,
    ChildRunPageView,
    ChildRunView,
    DocumentView,
    HealthView,
    ListRunsQuery,
    ReconcileRequest,
    ReconcileView,
    ResumeRequest,
    RunDetailView,
    RunGraphView,
    RunPageView,
    RunPath,
    RunView,
    StartRequest,
    StepOutcomeView,
    StepRequest,
    TimelineQuery,
    WorkflowsView,
    WorkflowView,
)
from refluxo.api.openapi import openapi_document
from refluxo.api.run_json import child_wait
from refluxo.runtime.errors import RunNotFound
from refluxo.runtime.links import child_run_id, parent_link
from refluxo.runtime.ports import Delivery

logger = logging.getLogger("refluxo.http")


def health(call: Call) -> HealthView:
    return HealthView(status="ok")


def document(call: Call) -> DocumentView:
    return DocumentView(openapi_document(call.routes))


def list_workflows(call: Call) -> WorkflowsView:
    specs = call.service.app.workflows.values()
    return WorkflowsView(workflows=[WorkflowView.of(spec) for spec in specs])


def start_run(call: Call) -> Reply:
    request = call.body_as(StartRequest)
    started = call.service.start(request.workflow, request.input, run_id=request.run_id)
    run_id = started.record.run_id
    return Reply(
        RunView.of(started.record),
        201 if started.created else 200,
        {"Location": f"/runs/{run_id}"},
    )


def list_runs(call: Call) -> RunPageView:
    query = call.query_as(ListRunsQuery)
    page = call.service.list(query.status, query.limit, query.cursor)
    return RunPageView(runs=[RunView.of(r) for r in page.runs], next_cursor=page.next_cursor)


def get_run(call: Call) -> RunDetailView:
    run_id = call.path_as(RunPath).run_id
    query = call.query_as(TimelineQuery)
    record = call.service.get(run_id)
    limit = query.timeline_limit
    timeline = (
        call.service.timeline(run_id, after_seq=query.timeline_after, limit=limit) if limit else []
    )
    return RunDetailView.of_run(record, timeline)


def get_run_graph(call: Call) -> RunGraphView:
    run_id = call.path_as(RunPath).run_id
    record = call.service.get(run_id)
    # The graph the run executes: the definition it started with, even if since edited.
    wire = call.service.store.get_definition(record.definition_version)
    if wire is None:
        raise RunNotFound(f"the definition of run {run_id!r} is missing from the store")
    return RunGraphView.of(record, wire)


def list_children(call: Call) -> ChildRunPageView:
    """The child runs of the run's latest wait after index ``after``: ``limit`` indices
    looked up (one read each); a child not created yet (its turn has not come, or the run
    stopped before it) is left out, as is a run under a child's id that another parent or a
    caller started."""
    run_id = call.path_as(RunPath).run_id
    query = call.query_as(ChildrenQuery)
    record = call.service.get(run_id)
    wait = child_wait(record.snapshot.metadata)
    if wait is None:
        return ChildRunPageView(children=[], next=None)
    version, count = wait
    first = query.after + 1
    last = min(count, first + query.limit) - 1  # the last index looked up
    children: list[ChildRunView] = []
    for index in range(first, last + 1):
        child = call.service.store.load_run(child_run_id(run_id, version, index))
        if child is None:
            continue
        link = parent_link(child.snapshot)
        if link is None or (link.run_id, link.version, link.index) != (run_id, version, index):
            continue
        children.append(ChildRunView.of(index, child))
    return ChildRunPageView(children=children, next=last if last + 1 < count else None)


def inspector_page(call: Call) -> Content:
    return inspector.page("index.html")


def docs_page(call: Call) -> Content:
    return inspector.page("docs.html")


def resume_run(call: Call) -> RunView:
    run_id = call.path_as(RunPath).run_id
    request = call.body_as(ResumeRequest)
    record = call.service.resume(run_id, request.payload, expected_version=request.version)
    return RunView.of(record)


def cancel_run(call: Call) -> RunView:
    run_id = call.path_as(RunPath).run_id
    request = call.body_as(CancelRequest)
    # No reason (or an empty one): the service's default reason.
    if request.reason:
        return RunView.of(call.service.cancel(run_id, request.reason))
    return RunView.of(call.service.cancel(run_id))


def deliver_step(call: Call) -> StepOutcomeView:
    request = call.body_as(StepRequest)
    delivery = Delivery(
        request.run_id,
        request.version,
        request.due_at,
        request.hop,
        platform_retries=call.platform_retries,
    )
    result = call.service.deliver(delivery)
    logger.info(
        "delivery %s v%s (hop %s): %s, %s steps",
        delivery.run_id,
        delivery.version,
        delivery.hop,
        result.outcome.value,
        result.steps,
    )
    return StepOutcomeView(outcome=result.outcome, steps=result.steps)


def reconcile(call: Call) -> ReconcileView:
    request = call.body_as(ReconcileRequest)
    service = call.service
    grace_ms = (
        service.reconcile_grace_ms if request.grace_s is None else round(request.grace_s * 1000)
    )
    report = service.reconcile(grace_ms=grace_ms, limit=request.limit, cursor=request.cursor)
    logger.info(
        "reconcile: %s overdue runs examined, %s scheduled again%s",
        report.examined,
        report.rescheduled,
        "; more remain" if report.next_cursor else "",
    )
    return ReconcileView(
        examined=report.examined, rescheduled=report.rescheduled, next_cursor=report.next_cursor
    )
