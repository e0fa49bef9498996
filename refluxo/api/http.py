"""The HTTP API: one handler, served the same way locally and on Cloud Functions.

:class:`HttpApi` takes a Flask (werkzeug) request, as functions-framework provides, and
returns a response; it routes by method and path itself, so a single HTTP function serves
the whole API. What it serves is the route table (:mod:`refluxo.api.routes`): for each
request it checks the ``Host`` (when the deployment names the hosts it answers), finds the
route, authenticates the caller as the route declares, checks that a request that changes
state is JSON, validates the path, query and body with the route's models, calls the
handler and serializes its response model. Every error is JSON
(``{"error": {"code", "message"}}``), its status chosen in :mod:`refluxo.api.errors`; a
request that is rejected changes nothing.
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
from refluxo.api.contract import Auth, Call, Content, Reply, Route
from refluxo.api.errors import UnsupportedMediaType, status_of
from refluxo.api.hosts import AllowedHosts, split_host
from refluxo.api.models import ErrorBody
from refluxo.api.parsing import MAX_BODY_BYTES as MAX_BODY_BYTES
from refluxo.api.parsing import Where, read_body, validate
from refluxo.api.routes import ROUTES
from refluxo.api.trace import TRACE_HEADER, traced
from refluxo.runtime.errors import Unauthorized
from refluxo.runtime.service import RunService

logger = logging.getLogger("refluxo.http")

ACCEPTED_WITHOUT_AUTHENTICATOR: frozenset[Auth] = frozenset(
    {Auth.CALLER, Auth.SCHEDULER, Auth.RECONCILER}
)
"""The kinds of route that accept every call when their authenticator is ``None``.

The one place that decides what a missing authenticator means, for an :class:`HttpApi`
built in process (tests, benchmarks). Deployments never rely on it: the composition root
(:mod:`refluxo.host.compose`) always passes a callers' check (the API key; on the embedded
default without one, :class:`~refluxo.api.auth.LoopbackOnly`; on Google Cloud without one,
only with ``REFLUXO_AUTH=iam``), a step check (the key or a refusal on the embedded
default, the OIDC token on Google Cloud) and a reconciler check (the callers' check on the
embedded default, the reconciler's OIDC token on Google Cloud). A kind left out of this set
refuses every call (401) until an authenticator is configured.
"""

JSON_MEDIA_TYPE = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as compact UTF-8 JSON; NaN and infinities are an error, never sent.

    Never cached (runs change; an answer may be a run's data behind a key) and never read
    as anything but JSON by a browser (``nosniff``)."""
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        status=status,
        mimetype="application/json",
        headers={**_JSON_HEADERS, **(headers or {})},
    )


_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


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


def _has_body(request: Request) -> bool:
    length = request.content_length
    chunked = "chunked" in (request.headers.get("Transfer-Encoding") or "").lower()
    return chunked or (length is not None and length > 0)


def require_json(request: Request) -> None:
    """Refuse a state-changing request that is not declared JSON (415).

    A web page may send any other site a form (``application/x-www-form-urlencoded``,
    ``multipart/form-data``) or ``text/plain`` without asking, and its browser attaches no
    credential a local server could tell apart; ``application/json`` needs the site's
    consent first (a CORS preflight, which this API never grants). So: a body must be
    declared ``application/json``, and a request without one may leave the type out only
    if no browser sent it (no ``Origin`` header); it is then read as ``{}``.
    """
    content_type = request.headers.get("Content-Type")
    if not content_type or not content_type.strip():
        if _has_body(request) or request.headers.get("Origin") is not None:
            raise UnsupportedMediaType(
                f"a request that changes state must be sent as {JSON_MEDIA_TYPE}"
            )
        return
    if request.mimetype != JSON_MEDIA_TYPE:
        shown = request.mimetype[:100] or content_type.strip()[:100]
        raise UnsupportedMediaType(f"the body must be {JSON_MEDIA_TYPE}, not {shown!r}")
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        # Read as it is, a compressed body would be refused as malformed JSON, and a plain
        # one sent with the header would be taken for what it is not: say which.
        raise UnsupportedMediaType(
            f"a body sent with Content-Encoding {encoding[:40]!r} is not read: send it "
            "uncompressed, without Content-Encoding"
        )


def _query(model: type[BaseModel], request: Request) -> dict[str, str]:
    """The query parameters ``model`` reads (by wire name), as given; the first of repeats."""
    names = (field.alias or name for name, field in model.model_fields.items())
    return {name: value for name in names if (value := request.args.get(name)) is not None}


def _count(request: Request, header: str) -> int:
    """A Cloud Tasks counter header: 0 when absent or not plain ASCII digits."""
    raw = request.headers.get(header) or "0"
    return min(int(raw), 1_000_000) if raw.isascii() and raw.isdigit() and len(raw) < 12 else 0


def _without_trailing_slash(request: Request) -> Response:
    """A redirect from ``/ui/`` to ``/ui``: a page's files are relative to it (``ui/main.js``),
    so from ``/ui/`` they would not be found. The target is relative too (``../ui``), so it
    holds behind a path prefix."""
    segment = request.path.rstrip("/").rsplit("/", 1)[-1]
    query = request.query_string.decode("latin-1")
    location = f"../{segment}" + (f"?{query}" if query else "")
    return Response(status=308, headers={"Location": location}, content_type="text/plain")


class HttpApi:
    """The API as a callable ``(flask.Request) -> flask.Response``.

    Args:
        service: the run operations.
        authenticate: checks callers of the :attr:`Auth.CALLER` routes (every route but the
            step endpoint and the public ones); ``None``: see
            :data:`ACCEPTED_WITHOUT_AUTHENTICATOR`.
        authenticate_step: checks callers of the :attr:`Auth.SCHEDULER` routes
            (``POST /tasks/step``); ``None``: likewise.
        authenticate_reconcile: checks callers of the :attr:`Auth.RECONCILER` routes
            (``POST /tasks/reconcile``); ``None``: likewise.
        max_body_bytes: larger bodies are refused with 413.
        routes: the table to serve (tests substitute handlers); the API's by default.
        hosts: the ``Host`` headers answered; others are refused with 421 (a malformed or
            missing one with 400) before anything else. None: any (a platform such as
            Cloud Run routes by host before the request arrives).
    """

    def __init__(
        self,
        service: RunService,
        *,
        authenticate: Authenticator | None = None,
        authenticate_step: Authenticator | None = None,
        authenticate_reconcile: Authenticator | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        routes: Sequence[Route] = ROUTES,
        hosts: AllowedHosts | None = None,
    ) -> None:
        self.service = service
        self.authenticate = authenticate
        self.authenticate_step = authenticate_step
        self.authenticate_reconcile = authenticate_reconcile
        self.max_body_bytes = max_body_bytes
        self.hosts = hosts
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
            # A doubled slash is no path of the API (404), not a redirect werkzeug raises.
            merge_slashes=False,
        )

    def authenticator(self, auth: Auth) -> Authenticator | None:
        """The check configured for routes of kind ``auth`` (``None`` for public ones)."""
        if auth is Auth.CALLER:
            return self.authenticate
        if auth is Auth.SCHEDULER:
            return self.authenticate_step
        if auth is Auth.RECONCILER:
            return self.authenticate_reconcile
        return None

    def listening_on(self, port: int) -> None:
        """The server is bound to ``port``: the bound address's names match only on it."""
        if self.hosts is not None:
            self.hosts = self.hosts.on_port(port)

    def _misdirected(self, request: Request) -> Response | None:
        """The refusal of a request whose ``Host`` is not answered here, if it is not."""
        if self.hosts is None:
            return None
        header = request.environ.get("HTTP_HOST")
        if header is None or split_host(header) is None:
            return error_response(400, "bad_request", "a valid Host header is required")
        default_port = 443 if request.scheme == "https" else 80
        if self.hosts.allows(header, default_port=default_port):
            return None
        return error_response(
            421,
            "misdirected_request",
            f"this server does not answer for Host {header[:100]!r} "
            "(REFLUXO_ALLOWED_HOSTS lists further names it may answer for)",
        )

    def __call__(self, request: Request) -> Response:
        # The request's trace, for every log line written while serving it (reset after).
        with traced(request.headers.get(TRACE_HEADER)):
            return self._serve(request)

    def _serve(self, request: Request) -> Response:
        misdirected = self._misdirected(request)
        if misdirected is not None:
            return misdirected
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
        if not route.documented and request.path != "/" and request.path.endswith("/"):
            return _without_trailing_slash(request)
        try:
            self._authenticate(route, request)
            return self._respond(route, route.handler(self._call(route, request, arguments)))
        except Exception as err:
            response = self._failure(err, request)
            if route.auth is Auth.SCHEDULER and response.status_code == 503:
                # Cloud Tasks retries a 429 like a 503, but counts it as an answer
                # (X-CloudTasks-TaskExecutionCount): a store or certificate outage then
                # never counts as an unanswered attempt of the node (see _call).
                response.status_code = 429
                response.headers["Retry-After"] = "1"
            return response

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
            require_json(request)
            data = read_body(request, self.max_body_bytes, required=route.body_required)
            body = validate(route.body, data, Where.BODY)
        # Attempts Cloud Tasks made without an answer from this code (a timeout, a crash):
        # its retries, minus the answers it received (TaskExecutionCount counts responses
        # other than 5xx, and this route answers its own transient failures 429).
        platform_retries = max(
            0,
            _count(request, "X-CloudTasks-TaskRetryCount")
            - _count(request, "X-CloudTasks-TaskExecutionCount"),
        )
        return Call(
            self.service,
            self.routes,
            path=path,
            query=query,
            body=body,
            platform_retries=min(platform_retries, 1_000_000),
        )

    def _respond(self, route: Route, reply: BaseModel | Reply | Content) -> Response:
        if isinstance(reply, Content):
            if reply.media_type != route.media_type:
                raise TypeError(f"{route.label} answered {reply.media_type}")
            return Response(
                reply.body, route.status, headers=dict(reply.headers), content_type=reply.media_type
            )
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
