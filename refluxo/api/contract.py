"""What a route is: its method and path, who may call it, what it reads and what it answers.

A :class:`Route` is a declaration, not behaviour: the request dispatcher
(:mod:`refluxo.api.http`) enforces it and the OpenAPI document (:mod:`refluxo.api.openapi`)
publishes it, so the two cannot drift apart. Handlers see a :class:`Call` whose inputs are
already validated models, and answer with a response model (or a :class:`Reply` when the
status or headers depend on the outcome).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from pydantic import BaseModel

from refluxo.runtime.service import RunService

M = TypeVar("M", bound=BaseModel)


class Auth(enum.Enum):
    """Who may call a route; each kind has its own authenticator in :class:`HttpApi`.

    A route that does not say is :attr:`CALLER`: a new endpoint is protected unless it
    declares itself :attr:`PUBLIC`, never the other way round.
    """

    CALLER = "caller"
    """A client of the run API (the API key)."""
    SCHEDULER = "scheduler"
    """The scheduler delivering steps (an OIDC identity token on Google Cloud)."""
    RECONCILER = "reconciler"
    """The job that re-schedules overdue runs (on Google Cloud, Cloud Scheduler's OIDC
    identity token; on the embedded default, the callers' check)."""
    PUBLIC = "public"
    """Anyone: liveness and the API's own description, nothing that reads or changes runs."""


@dataclass(frozen=True, slots=True)
class Link:
    """What a client may do next with a route's successful answer (an OpenAPI link).

    Attributes:
        name: the link's name in the document (``GetRun``).
        operation_id: the operation it leads to.
        parameters: ``(parameter, runtime expression)`` pairs, such as
            ``("runId", "$response.body#/runId")``.
        description: one line for the document.
    """

    name: str
    operation_id: str
    parameters: tuple[tuple[str, str], ...]
    description: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer when the route's default status or no headers will not do."""

    body: BaseModel
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


JSON_MEDIA_TYPE = "application/json"
"""What every API operation answers; a route declaring another serves a page or an asset."""


@dataclass(frozen=True, slots=True)
class Content:
    """A handler's answer that is not JSON: a page or a static file of the run inspector.

    Such routes hold no run data (the page fetches it from the API, authenticated), so they
    are the only answers besides the API's JSON; their headers carry the page's security
    policy (Content-Security-Policy, nosniff).
    """

    body: bytes
    media_type: str
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def _as(value: BaseModel | None, model: type[M], part: str) -> M:
    if not isinstance(value, model):
        # The route table and its handler disagree: a programming error, not bad input.
        raise TypeError(f"the route declares no {model.__name__} {part}")
    return value


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated, validated request, as a handler sees it.

    Attributes:
        service: the run operations.
        routes: the table being served (the OpenAPI handler publishes it).
        path: the path parameters, as the route's ``path`` model.
        query: the query parameters, as the route's ``query`` model.
        body: the JSON body, as the route's ``body`` model.
    """

    service: RunService
    routes: tuple[Route, ...]
    path: BaseModel | None = None
    query: BaseModel | None = None
    body: BaseModel | None = None
    platform_retries: int = 0
    """How often the platform retried this request without an answer from refluxo (a
    timeout, a crash): Cloud Tasks' ``X-CloudTasks-TaskRetryCount`` minus its
    ``X-CloudTasks-TaskExecutionCount`` (0 when absent or not plain numbers)."""

    def path_as(self, model: type[M]) -> M:
        """The path parameters, typed (raises TypeError if the route declares others)."""
        return _as(self.path, model, "path")

    def query_as(self, model: type[M]) -> M:
        """The query parameters, typed (raises TypeError if the route declares others)."""
        return _as(self.query, model, "query")

    def body_as(self, model: type[M]) -> M:
        """The body, typed (raises TypeError if the route declares another)."""
        return _as(self.body, model, "body")


Handler = Callable[[Call], BaseModel | Reply | Content]
"""Answers a call; domain errors it raises become statuses in :mod:`refluxo.api.errors`."""


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: everything the dispatcher enforces and the document publishes.

    Attributes:
        method: the HTTP method (``GET`` routes answer ``HEAD`` too).
        path: the OpenAPI path, with ``{name}`` parameters (``/runs/{runId}``).
        operation_id: the OpenAPI operation id, unique in the table.
        handler: what answers the call.
        response: the model of the success body (the handler must answer with it).
        summary: one line for the document (the success response's description too).
        auth: who may call it; required (:attr:`Auth.CALLER`) unless declared otherwise.
        path_model: the path parameters, named by their aliases.
        query: the query parameters (absent ones take the model's defaults).
        body: the JSON body; ``None``: the route reads no body.
        body_required: whether an empty body is refused (otherwise it means ``{}``).
        status: the success status.
        other_successes: further success statuses the handler may choose, each with its
            meaning (the body is ``response`` too). Pairs, not a dict: a route is hashable,
            so the document of a table is built once.
        errors: the domain error statuses the handler may answer, beyond those implied by
            the declaration (400 for inputs, 413 and 415 for a body, 401 and 403 for a
            protected route, 421 for any).
        links: the operations a successful answer leads to (published on every success
            status; a stateful fuzzer follows them).
        media_type: the success body's media type. Anything but JSON is a page or a static
            file of the run inspector, answered with :class:`Content` and left out of the
            OpenAPI document (it is the API's human interface, not part of the API).
    """

    method: str
    path: str
    operation_id: str
    handler: Handler
    response: type[BaseModel]
    summary: str
    auth: Auth = Auth.CALLER
    path_model: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    status: int = 200
    other_successes: tuple[tuple[int, str], ...] = ()
    errors: frozenset[int] = frozenset()
    links: tuple[Link, ...] = ()
    media_type: str = JSON_MEDIA_TYPE

    @property
    def documented(self) -> bool:
        """Whether the OpenAPI document publishes this route (every JSON operation does)."""
        return self.media_type == JSON_MEDIA_TYPE

    @property
    def label(self) -> str:
        """``METHOD /path``, as schemathesis and the logs name an operation."""
        return f"{self.method} {self.path}"

    @property
    def success_statuses(self) -> frozenset[int]:
        return frozenset({self.status, *(status for status, _ in self.other_successes)})
