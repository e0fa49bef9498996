"""The API's routes: one declaration each, enforced by the dispatcher, published as OpenAPI.

Every route is authenticated as :attr:`Auth.CALLER` unless it says otherwise; only the
liveness check and the API's own description are :attr:`Auth.PUBLIC`. A new route is
therefore protected by default, and its inputs validated, its document written and its
authentication tested (``tests/api``) by adding it here.
"""

from __future__ import annotations

from refluxo.api import handlers, inspector
from refluxo.api.contract import Auth, Link, Route
from refluxo.api.models import (
    CancelRequest,
    ChildrenQuery,
    ChildRunPageView,
    DocumentView,
    HealthView,
    ListRunsQuery,
    PageView,
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
)

_RUN_ID = (("runId", "$response.body#/runId"),)
GET_RUN = Link("GetRun", "getRun", _RUN_ID, "read the run and its timeline")
RESUME_RUN = Link("ResumeRun", "resumeRun", _RUN_ID, "resume the run once it is paused")
CANCEL_RUN = Link("CancelRun", "cancelRun", _RUN_ID, "cancel the run")
"""What comes after a start: read, resume, cancel (the OpenAPI links of the run routes)."""

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/healthz",
        "health",
        handlers.health,
        HealthView,
        "alive",
        auth=Auth.PUBLIC,
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        handlers.document,
        DocumentView,
        "this document",
        auth=Auth.PUBLIC,
    ),
    Route(
        "GET", "/workflows", "listWorkflows", handlers.list_workflows, WorkflowsView, "workflows"
    ),
    Route(
        "POST",
        "/runs",
        "startRun",
        handlers.start_run,
        RunView,
        "started",
        body=StartRequest,
        status=201,
        other_successes=((200, "already started with this runId, workflow and input"),),
        errors=frozenset({404, 409, 503}),
        links=(GET_RUN, RESUME_RUN, CANCEL_RUN),
    ),
    Route(
        "GET",
        "/runs",
        "listRuns",
        handlers.list_runs,
        RunPageView,
        "runs, newest first",
        query=ListRunsQuery,
        errors=frozenset({503}),
    ),
    Route(
        "GET",
        "/runs/{runId}",
        "getRun",
        handlers.get_run,
        RunDetailView,
        "the run and a page of its timeline",
        path_model=RunPath,
        query=TimelineQuery,
        errors=frozenset({404, 503}),
        links=(RESUME_RUN, CANCEL_RUN),
    ),
    Route(
        "GET",
        "/runs/{runId}/graph",
        "getRunGraph",
        handlers.get_run_graph,
        RunGraphView,
        "the graph the run executes (node ids and types, edges), to draw it",
        path_model=RunPath,
        errors=frozenset({404, 503}),
    ),
    Route(
        "GET",
        "/runs/{runId}/children",
        "listChildRuns",
        handlers.list_children,
        ChildRunPageView,
        "the child runs of the run's latest map, parallel or call node, a page at a time",
        path_model=RunPath,
        query=ChildrenQuery,
        errors=frozenset({404, 503}),
    ),
    Route(
        "POST",
        "/runs/{runId}/resume",
        "resumeRun",
        handlers.resume_run,
        RunView,
        "resumed; the node runs with the payload",
        path_model=RunPath,
        body=ResumeRequest,
        body_required=True,
        status=202,
        errors=frozenset({404, 409, 503}),
        links=(GET_RUN, CANCEL_RUN),
    ),
    Route(
        "POST",
        "/runs/{runId}/cancel",
        "cancelRun",
        handlers.cancel_run,
        RunView,
        "cancelled (status failed)",
        path_model=RunPath,
        body=CancelRequest,
        body_required=False,
        errors=frozenset({404, 409, 503}),
        links=(GET_RUN,),
    ),
    Route(
        "POST",
        "/tasks/step",
        "deliverStep",
        handlers.deliver_step,
        StepOutcomeView,
        "internal: the scheduler delivers one step (only its identity may call this)",
        auth=Auth.SCHEDULER,
        body=StepRequest,
        errors=frozenset({503}),
    ),
    Route(
        "POST",
        "/tasks/reconcile",
        "reconcile",
        handlers.reconcile,
        ReconcileView,
        "internal: schedule again the runs whose next step is overdue (the reconciler)",
        auth=Auth.RECONCILER,
        body=ReconcileRequest,
        body_required=False,
        errors=frozenset({503}),
    ),
    *(
        Route(
            "GET",
            path,
            operation_id,
            handler,
            PageView,
            summary,
            auth=Auth.PUBLIC,
            media_type=inspector.HTML,
        )
        for path, operation_id, handler, summary in (
            ("/", "home", handlers.inspector_page, "the run inspector (as /ui)"),
            ("/ui", "inspector", handlers.inspector_page, "the run inspector"),
            ("/docs", "docs", handlers.docs_page, "Swagger UI on this API's document"),
        )
    ),
    *(
        Route(
            "GET",
            f"/ui/{asset.name}",
            f"asset:{asset.name}",
            asset.handler,
            PageView,
            f"the run inspector's {asset.name}",
            auth=Auth.PUBLIC,
            media_type=asset.media_type,
        )
        for asset in inspector.ASSETS
    ),
)
"""Every endpoint of the API, then the run inspector's pages and files: public because
they hold no data (the page reads runs through the routes above, with the caller's key)."""

INTERNAL: frozenset[Auth] = frozenset({Auth.SCHEDULER, Auth.RECONCILER})
"""The kinds of route only the platform calls (Cloud Tasks, Cloud Scheduler)."""

STEP_ROUTES: tuple[Route, ...] = tuple(
    route for route in ROUTES if route.auth is not Auth.CALLER and route.documented
)
"""What the dispatcher function serves: the step and reconcile routes and the public ones
but the inspector's (the routes of a deployment that serves no caller)."""

CALLER_ROUTES: tuple[Route, ...] = tuple(route for route in ROUTES if route.auth not in INTERNAL)
"""What the API function serves on Google Cloud: the callers' routes and the public ones."""
