"""The API's routes: one declaration each, enforced by the dispatcher, published as OpenAPI.

Every route is authenticated as :attr:`Auth.CALLER` unless it says otherwise; only the
liveness check and the API's own description are :attr:`Auth.PUBLIC`. A new route is
therefore protected by default, and its inputs validated, its document written and its
authentication tested (``tests/api``) by adding it here.
"""

from __future__ import annotations

from refluxo.api import handlers
from refluxo.api.contract import Auth, Link, Route
from refluxo.api.models import (
    CancelRequest,
    DocumentView,
    HealthView,
    ListRunsQuery,
    ReconcileRequest,
    ReconcileView,
    ResumeRequest,
    RunDetailView,
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
        "POST",
        "/runs/{runId}/resume",
        "resumeRun",
        handlers.resume_run,
        RunView,
        "resumed; the node runs with the payload",
        path_model=RunPath,
        body=ResumeRequest,
        body_required=False,
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
)
"""Every endpoint of the API."""

INTERNAL: frozenset[Auth] = frozenset({Auth.SCHEDULER, Auth.RECONCILER})
"""The kinds of route only the platform calls (Cloud Tasks, Cloud Scheduler)."""

STEP_ROUTES: tuple[Route, ...] = tuple(route for route in ROUTES if route.auth is not Auth.CALLER)
"""What the dispatcher function serves: the step and reconcile routes and the public ones
(the routes of a deployment that serves no caller)."""

CALLER_ROUTES: tuple[Route, ...] = tuple(route for route in ROUTES if route.auth not in INTERNAL)
"""What the API function serves on Google Cloud: the callers' routes and the public ones."""
