"""The HTTP API: one handler, served the same way locally and on Cloud Functions.

The handler takes a Flask (werkzeug) request, as functions-framework provides, and returns
a response; it routes by method and path itself, so a single HTTP function serves the whole
API. Every error is JSON (``{"error": {"code", "message"}}``) with a 4xx status; a request
that is rejected changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flask import Request, Response
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from refluxo._aio import run_to_completion
from refluxo.model import SnapshotStatus
from refluxo.runtime.dispatcher import DeliveryResult
from refluxo.runtime.errors import (
    BackendUnavailable,
    BadRequest,
    PayloadTooLarge,
    RuntimeErrorBase,
)
from refluxo.runtime.naming import RUN_ID_PATTERN
from refluxo.runtime.openapi import MAX_INTEGER, openapi_document
from refluxo.runtime.protocols import Delivery, RunRecord, TimelineEntry
from refluxo.runtime.service import RunService

logger = logging.getLogger("refluxo.http")

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
"""Request bodies above 1 MiB are refused with 413."""

MAX_PAGE = 200

Authenticator = Callable[[Request], None]
"""Raises :class:`~refluxo.runtime.errors.Unauthorized` or ``Forbidden`` to refuse a call."""

_ROUTES = Map(
    [
        Rule("/healthz", endpoint="health", methods=["GET"]),
        Rule("/openapi.json", endpoint="openapi", methods=["GET"]),
        Rule("/workflows", endpoint="list_workflows", methods=["GET"]),
        Rule("/runs", endpoint="start", methods=["POST"]),
        Rule("/runs", endpoint="list_runs", methods=["GET"]),
        Rule("/runs/<run_id>", endpoint="get_run", methods=["GET"]),
        Rule("/runs/<run_id>/resume", endpoint="resume", methods=["POST"]),
        Rule("/runs/<run_id>/cancel", endpoint="cancel", methods=["POST"]),
        Rule("/tasks/step", endpoint="step", methods=["POST"]),
    ],
    strict_slashes=False,
)

_PUBLIC = frozenset({"list_workflows", "start", "list_runs", "get_run", "resume", "cancel"})
_OPEN = frozenset({"health", "openapi"})

_loops = threading.local()


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on this thread's event loop (created once)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return run_to_completion(coroutine, loop)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def run_view(record: RunRecord, timeline: list[TimelineEntry] | None = None) -> dict[str, Any]:
    """The JSON shape of a run in API responses."""
    view: dict[str, Any] = {
        "runId": record.run_id,
        "workflow": record.workflow,
        "definitionVersion": record.definition_version,
        "status": record.status.value,
        "version": record.version,
        "currentNodeId": record.snapshot.current_node_id,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "resultCount": record.result_count,
        "snapshot": record.snapshot.model_dump(mode="json", exclude={"context"}),
    }
    if timeline is not None:
        view["timeline"] = [timeline_view(entry) for entry in timeline]
    return view


def timeline_view(entry: TimelineEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "nodeId": entry.node_id, **entry.result.model_dump(mode="json")}


class HttpApi:
    """The API as a callable ``(flask.Request) -> flask.Response``.

    Args:
        service: the run operations.
        authenticate: checks callers of the public endpoints (start, resume, cancel, get,
            list); ``None`` accepts everyone (the local default, bound to 127.0.0.1).
        authenticate_step: checks callers of ``POST /tasks/step`` (the scheduler).
        max_body_bytes: larger bodies are refused with 413.
    """

    def __init__(
        self,
        service: RunService,
        *,
        authenticate: Authenticator | None = None,
        authenticate_step: Authenticator | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.service = service
        self.authenticate = authenticate
        self.authenticate_step = authenticate_step
        self.max_body_bytes = max_body_bytes

    def __call__(self, request: Request) -> Response:
        adapter = _ROUTES.bind("api", path_info=request.path, url_scheme="http")
        try:
            endpoint, args = adapter.match(request.path, method=request.method)
        except MethodNotAllowed as err:
            allowed = ", ".join(sorted(err.valid_methods or []))
            response = error_response(405, "method_not_allowed", f"use {allowed}")
            response.headers["Allow"] = allowed
            return response
        except NotFound:
            return error_response(404, "not_found", f"no endpoint {request.path}")
        try:
            if endpoint in _PUBLIC and self.authenticate is not None:
                self.authenticate(request)
            if endpoint == "step" and self.authenticate_step is not None:
                self.authenticate_step(request)
            handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
            return handler(request, **args)
        except RuntimeErrorBase as err:
            return error_response(err.status, err.code, str(err))
        except BackendUnavailable as err:
            logger.warning("unavailable on %s %s: %s", request.method, request.path, err)
            return error_response(503, "unavailable", f"{err}; retry later")
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error; see the server log")

    # -- parsing ------------------------------------------------------------------------

    def _body(self, request: Request, *, required: bool) -> dict[str, Any]:
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise PayloadTooLarge(f"request body over {self.max_body_bytes} bytes")
        raw = request.stream.read(self.max_body_bytes + 1)
        if len(raw) > self.max_body_bytes:
            raise PayloadTooLarge(f"request body over {self.max_body_bytes} bytes")
        if not raw:
            if required:
                raise BadRequest("a JSON object body is required")
            return {}
        try:
            body = json.loads(raw, parse_constant=_not_json, parse_float=_finite_float)
            # Lone surrogates ("\ud800") parse, but no UTF-8 text (nor the store) holds them.
            json.dumps(body, ensure_ascii=False).encode()
        except (ValueError, UnicodeError) as err:
            raise BadRequest(f"malformed JSON body: {err}") from err
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    @staticmethod
    def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.args.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as err:
            raise BadRequest(f"{name} must be an integer") from err
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}")
        return value

    @staticmethod
    def _field(
        body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = False
    ) -> Any:
        if name not in body:
            if required:
                raise BadRequest(f"missing field {name!r}")
            return None
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = (
                kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            )
            raise BadRequest(f"field {name!r} must be of type {expected}")
        return value

    # -- endpoints ------------------------------------------------------------------------

    def _health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def _openapi(self, request: Request) -> Response:
        return json_response(openapi_document())

    def _list_workflows(self, request: Request) -> Response:
        workflows = [
            {
                "name": spec.name,
                "version": spec.version,
                "start": spec.start,
                "nodes": len(spec.definition.nodes),
            }
            for spec in self.service.app.workflows.values()
        ]
        return json_response({"workflows": workflows})

    def _start(self, request: Request) -> Response:
        body = self._body(request, required=True)
        workflow = self._field(body, "workflow", str, required=True)
        run_id = self._field(body, "runId", str)
        if run_id is not None and not RUN_ID_PATTERN.fullmatch(run_id):
            # fullmatch: the pattern's "$" also matches before a trailing newline.
            raise BadRequest(
                "runId must be 1-128 characters: letters, digits and '._:-', "
                "starting with a letter or digit"
            )
        started = self.service.start(workflow, body.get("input"), run_id=run_id)
        return json_response(
            run_view(started.record),
            201 if started.created else 200,
            headers={"Location": f"/runs/{started.record.run_id}"},
        )

    def _list_runs(self, request: Request) -> Response:
        raw_status = request.args.get("status")
        status = None
        if raw_status is not None:
            try:
                status = SnapshotStatus(raw_status)
            except ValueError as err:
                names = ", ".join(s.value for s in SnapshotStatus)
                raise BadRequest(f"status must be one of {names}") from err
        limit = self._int_arg(request, "limit", 50, 1, MAX_PAGE)
        page = self.service.list(status, limit, request.args.get("cursor"))
        return json_response(
            {"runs": [run_view(r) for r in page.runs], "nextCursor": page.next_cursor}
        )

    def _get_run(self, request: Request, run_id: str) -> Response:
        record = self.service.get(run_id)
        after = self._int_arg(request, "timelineAfter", -1, -1, MAX_INTEGER)
        limit = self._int_arg(request, "timelineLimit", 100, 0, 1000)
        timeline = self.service.timeline(run_id, after_seq=after, limit=limit) if limit else []
        return json_response(run_view(record, timeline))

    def _resume(self, request: Request, run_id: str) -> Response:
        body = self._body(request, required=False)
        version = self._field(body, "version", int)
        record = self.service.resume(run_id, body.get("payload"), expected_version=version)
        return json_response(run_view(record), 202)

    def _cancel(self, request: Request, run_id: str) -> Response:
        body = self._body(request, required=False)
        reason = self._field(body, "reason", str)
        record = self.service.cancel(run_id, reason or "Cancelled")
        return json_response(run_view(record))

    def _step(self, request: Request) -> Response:
        body = self._body(request, required=True)
        run_id = self._field(body, "runId", str, required=True)
        version = self._field(body, "version", int, required=True)
        due_at = self._field(body, "dueAt", int) or 0
        hop = self._field(body, "hop", int) or 0
        if not all(0 <= value <= MAX_INTEGER for value in (version, due_at, hop)):
            raise BadRequest(f"version, dueAt and hop must be non-negative, at most {MAX_INTEGER}")
        result: DeliveryResult = run_coroutine(
            self.service.dispatcher.deliver(Delivery(run_id, version, due_at, hop))
        )
        logger.info(
            "delivery %s v%s (hop %s): %s, %s steps",
            run_id,
            version,
            hop,
            result.outcome.value,
            result.steps,
        )
        return json_response({"outcome": result.outcome.value, "steps": result.steps})
