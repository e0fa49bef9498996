"""Cloud Functions entry points (functions-framework), thin by design, for any project.

A project deploys with a ``main.py`` of one line (``examples/template/main.py``)::

    from refluxo.host.functions import api, on_message, step

and its App named by ``REFLUXO_APP`` (Terraform's ``app``), importable from the project's
directory (functions-framework puts the source file's directory on ``sys.path``; so does
Python for ``python main.py`` and ``import main``).

* ``api``: the HTTP API (start, list, get, resume, cancel runs) and the run inspector.
* ``step``: the step endpoint Cloud Tasks calls (``POST /tasks/step``).
* ``on_message``: a CloudEvent function for Pub/Sub messages that start, resume or cancel
  runs (the message contract is in ``refluxo/api/events.py``).

Settings come from environment variables (``refluxo/host/settings.py``) and are validated when
this module is imported, so a misconfigured deployment fails at start with a message naming
what is missing. With no cloud settings the embedded default (SQLite) is used, so
``functions-framework --target api --source main.py`` runs locally as is, with the local
server's rules: without ``REFLUXO_API_KEY`` it answers only this machine, whatever address
functions-framework binds, and only the ``Host`` names a local server is reached by
(``127.0.0.1``, ``localhost``, ``[::1]``, plus ``REFLUXO_ALLOWED_HOSTS``).

Which function this process is comes from ``REFLUXO_ROUTES`` (``api``, ``dispatcher`` or
``events``, set by Terraform), else from ``FUNCTION_TARGET`` (Google's buildpacks set it
to the entry point on Cloud Functions; functions-framework reads it too). The dispatcher
(``step``) and events (``on_message``) functions serve no caller route, so they need no API
key; any other process serves the callers' routes, and on Google Cloud refuses to start
without ``REFLUXO_API_KEY`` unless ``REFLUXO_AUTH=iam`` is declared.
"""

from __future__ import annotations

import logging
import os
import threading

import flask
import functions_framework
from cloudevents.http.event import CloudEvent
from flask import Request, Response

from refluxo.api.events import handle_push, reject_deep_push
from refluxo.api.trace import TRACE_HEADER, traced
from refluxo.host.compose import Deployment, build_deployment, check_backend, import_app
from refluxo.host.logs import configure_logging
from refluxo.host.settings import (
    CloudSettings,
    ConfigurationError,
    load_settings,
    require_callers_guard,
    require_private_listener,
)

SETTINGS = load_settings(os.environ)
# One JSON object per line on Google Cloud (Cloud Logging's structured entries), text
# otherwise; REFLUXO_LOG_FORMAT chooses explicitly.
configure_logging(os.environ, cloud=isinstance(SETTINGS, CloudSettings))
logger = logging.getLogger("refluxo.main")
check_backend(SETTINGS)
APP = import_app(SETTINGS.app)  # from the project: on sys.path (see above)

CALLERLESS_TARGETS = frozenset({"step", "on_message"})
"""The entry points that serve no caller route (and so need no API key)."""

ROUTE_SETS = {
    # REFLUXO_ROUTES (set by Terraform) -> (serves the callers' API, serves the scheduler's)
    "api": (True, False),
    "dispatcher": (False, True),
    "events": (False, False),
}
"""The routes each deployed function serves: nothing else answers in it."""


def _route_set() -> tuple[bool, bool]:
    declared = (os.environ.get("REFLUXO_ROUTES") or "").strip().lower()
    if declared:
        if declared not in ROUTE_SETS:
            raise ConfigurationError(
                f"REFLUXO_ROUTES must be one of {', '.join(ROUTE_SETS)}, got {declared!r}"
            )
        return ROUTE_SETS[declared]
    target = (os.environ.get("FUNCTION_TARGET") or "").strip()
    callers = target not in CALLERLESS_TARGETS  # unknown target: assume it does
    scheduler = not (isinstance(SETTINGS, CloudSettings) and target == "api")
    return callers, scheduler


SERVES_CALLERS, SERVES_SCHEDULER = _route_set()
"""Whether this process serves the callers' routes and the scheduler's (step, reconcile):
``REFLUXO_ROUTES`` when set, else inferred from ``FUNCTION_TARGET`` (the API function on
Google Cloud serves no scheduler route; the dispatcher and events functions no caller
route)."""

require_private_listener(SETTINGS)
if SERVES_CALLERS:
    require_callers_guard(SETTINGS)

_deployment: Deployment | None = None
_lock = threading.Lock()


def deployment() -> Deployment:
    """The wired deployment, built on first use (clients are created lazily)."""
    global _deployment
    if _deployment is None:
        with _lock:
            if _deployment is None:
                _deployment = build_deployment(
                    SETTINGS,
                    APP,
                    callers=SERVES_CALLERS,
                    scheduler=SERVES_SCHEDULER,
                    share_database=True,  # several workers of one server
                )
    return _deployment


@functions_framework.http
def api(request: Request) -> Response:
    return deployment().api(request)


@functions_framework.http
def step(request: Request) -> Response:
    return deployment().api(request)


@functions_framework.cloud_event
def on_message(event: CloudEvent) -> None:
    """Handle one Pub/Sub push; raises only for transient failures (to be redelivered).

    Every malformed delivery (an envelope that is not a Pub/Sub push, data that is not
    base64 or not JSON as the API reads it, too large or too deep, an unknown action...)
    is logged in one line with its reason and acknowledged: see ``refluxo/api/events.py``.
    """
    event_id = event.get("id")
    header = flask.request.headers.get(TRACE_HEADER) if flask.has_request_context() else None
    with traced(header):
        handle_push(deployment().service, event.data, str(event_id or "unknown"))


def _acknowledge_deep_pushes() -> None:
    """In the events function's app, reject a push nested too deep before functions-framework
    parses it as a CloudEvent (which would recurse until Python stops it: a 500 and a
    traceback). Rejected as every malformed push is: one log line, acknowledged."""
    if not flask.has_app_context() or flask.current_app.name != "on_message":
        return  # imported outside functions-framework, or by another function

    @flask.current_app.before_request
    def reject_deep() -> tuple[str, int] | None:
        event_id = flask.request.headers.get("ce-id") or "unknown"
        if reject_deep_push(flask.request.get_data(), event_id) is None:
            return None
        return "OK", 200


_acknowledge_deep_pushes()
