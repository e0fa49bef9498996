"""The HTTP API: one handler, served the same way locally and on Cloud Functions.

:class:`HttpApi` takes a Flask (werkzeug) request, as functions-framework provides, and
returns a response; it routes by method and path itself, so a single HTTP function serves
the whole API. What it serves is the route table (:mod:`refluxo.api.routes`): for each
request it finds the route, authenticates the caller as the route declares, validates the
path, query and body with the route's models, calls the handler and serializes its
response model. Every error is JSON (``{"error": {"code", "message"}}``), its status
chosen in :mod:`refluxo.api.errors`; a request that is rejected changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Request, Response
from pydantic import BaseModel
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from refluxo.api.auth import Authenticator as Authenticator
from refluxo.api.contract import Auth, Call, Reply, Route
from refluxo.api.errors import status_of
from refluxo.api.models import ErrorBody
from refluxo.api.parsing import MAX_BODY_BYTES as MAX_BODY_BYTES
from refluxo.api.parsing import Where, read_body, validate
from refluxo.api.routes import ROUTES
from refluxo.runtime.errors import Unauthorized
from refluxo.runtime.service import RunService

logger = logging.getLogger("refluxo.http")

ACCEPTED_WITHOUT_AUTHENTICATOR: frozenset[Auth] = frozenset({Auth.CALLER, Auth.SCHEDULER})
"""The kinds of route that accept every call when their authenticator is ``None``.

The one place that decides what a missing authenticator means. Callers: the local server
binds to 127.0.0.1 and runs without an API key. The step endpoint: whether a deployment may
go without the scheduler's check is, for now, the composition root's decision
(:mod:`refluxo.host.compose` passes one on Google Cloud). A kind left out of this set
refuses every call (401) until an authenticator is configured.
"""


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as compact UTF-8 JSON; NaN and infinities are an error, never sent."""
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        status=status,
        mimetype="application/json",
        headers=dict(headers or {}),
    )


def model_response(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response model, by its wire (camelCase) names."""
    return json_response(model.model_dump(mode="json", by_alias=True), status, headers)


def error_response(status: int, code: str, message: str) -> Response:
    """The error body every failure answers with."""
    return model_response(ErrorBody.of(code, message), status)


def _rule_path(path: str) -> str:
    """``/runs/{runId}`` (OpenAPI) as ``/runs/<runId>`` (werkzeug)."""
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def _query(model: type[BaseModel], request: Request) -> dict[str, str]:
    """The query parameters ``model`` reads (by wire name), as given; the first of repeats."""
    names = (field.alias or name for name, field in model.model_fields.items())
    return {name: value for name in names if (value := request.args.get(name)) is not None}


class HttpApi:
    """The API as a callable ``(flask.Request) -> flask.Response``.

    Args:
        service: the run operations.
        authenticate: checks callers of the :attr:`Auth.CALLER` routes (every route but the
            step endpoint and the public ones); ``None``: see
            :data:`ACCEPTED_WITHOUT_AUTHENTICATOR`.
        authenticate_step: checks callers of the :attr:`Auth.SCHEDULER` routes
            (``POST /tasks/step``); ``None``: likewise.
        max_body_bytes: larger bodies are refused with 413.
        routes: the table to serve (tests substitute handlers); the API's by default.
    """

    def __init__(
        self,
        service: RunService,
        *,
        authenticate: Authenticator | None = None,
        authenticate_step: Authenticator | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        routes: Sequence[Route] = ROUTES,
    ) -> None:
        self.service = service
        self.authenticate = authenticate
        self.authenticate_step = authenticate_step
        self.max_body_bytes = max_body_bytes
        self.routes = tuple(routes)
        self._by_id = {route.operation_id: route for route in self.routes}
        if len(self._by_id) != len(self.routes):
            raise ValueError("two routes share an operation id")
        self._map = Map(
            [
                Rule(_rule_path(r.path), endpoint=r.operation_id, methods=[r.method])
                for r in self.routes
            ],
            strict_slashes=False,
        )

    def authenticator(self, auth: Auth) -> Authenticator | None:
        """The check configured for routes of kind ``auth`` (``None`` for public ones)."""
        if auth is Auth.CALLER:
            return self.authenticate
        if auth is Auth.SCHEDULER:
            return self.authenticate_step
        return None

    def __call__(self, request: Request) -> Response:
        adapter = self._map.bind("api", path_info=request.path, url_scheme="http")
        try:
            endpoint, arguments = adapter.match(request.path, method=request.method)
        except MethodNotAllowed as err:
            allowed = ", ".join(sorted(err.valid_methods or []))
            response = error_response(405, "method_not_allowed", f"use {allowed}")
            response.headers["Allow"] = allowed
            return response
        except NotFound:
            return error_response(404, "not_found", f"no endpoint {request.path}")
        route = self._by_id[endpoint]
        try:
            self._authenticate(route, request)
            return self._respond(route, route.handler(self._call(route, request, arguments)))
        except Exception as err:
            return self._failure(err, request)

    def _authenticate(self, route: Route, request: Request) -> None:
        if route.auth is Auth.PUBLIC:
            return
        check = self.authenticator(route.auth)
        if check is not None:
            check(request)
        elif route.auth not in ACCEPTED_WITHOUT_AUTHENTICATOR:
            raise Unauthorized(f"no authenticator is configured for {route.label}")

    def _call(self, route: Route, request: Request, arguments: Mapping[str, Any]) -> Call:
        path = query = body = None
        if route.path_model is not None:
            path = validate(route.path_model, arguments, Where.PATH)
        if route.query is not None:
            query = validate(route.query, _query(route.query, request), Where.QUERY)
        if route.body is not None:
            data = read_body(request, self.max_body_bytes, required=route.body_required)
            body = validate(route.body, data, Where.BODY)
        return Call(self.service, self.routes, path=path, query=query, body=body)

    def _respond(self, route: Route, reply: BaseModel | Reply) -> Response:
        if isinstance(reply, Reply):
            body, status, headers = reply.body, reply.status or route.status, reply.headers
        else:
            body, status, headers = reply, route.status, {}
        if status < 400 and (
            status not in route.success_statuses or not isinstance(body, route.response)
        ):
            # The handler broke its route's declaration, and so the published document.
            raise TypeError(f"{route.label} answered {status} {type(body).__name__}")
        return model_response(body, status, headers)

    def _failure(self, error: Exception, request: Request) -> Response:
        mapped = status_of(error)
        if mapped is None:
            logger.exception("unexpected error on %s %s", request.method, request.path)
            return error_response(500, "internal", "internal error; see the server log")
        status, code = mapped
        if status == 503:
            logger.warning("unavailable on %s %s: %s", request.method, request.path, error)
            return error_response(status, code, f"{error}; retry later")
        return error_response(status, code, str(error))
