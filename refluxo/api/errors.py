"""Domain errors to HTTP statuses: the only place that knows both.

Two refusals belong to HTTP alone and are defined here: a state-changing request that is
not declared JSON (415) and a request for a ``Host`` this server does not answer (421).
"""

from __future__ import annotations

from refluxo.errors import LimitExceededError, RefluxoError, TransientError
from refluxo.runtime.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    RunConflict,
    RunError,
    RunNotFound,
    Unauthorized,
    UnknownWorkflow,
)


class UnsupportedMediaType(RefluxoError):
    """A request that changes state is not ``application/json`` (a form, ``text/plain``...).

    What a web page can send to another site without asking (a "simple" request) is
    exactly what this refuses, so no page can start, resume or cancel a run by posting
    to a local server (cross-site request forgery).
    """


class MisdirectedRequest(RefluxoError):
    """The ``Host`` header names no address this server answers (a DNS rebinding, a
    request meant for another site)."""


_STATUS: list[tuple[type[BaseException], int, str]] = [
    (UnknownWorkflow, 404, "unknown_workflow"),
    (RunNotFound, 404, "run_not_found"),
    (RunConflict, 409, "conflict"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (UnsupportedMediaType, 415, "unsupported_media_type"),
    (MisdirectedRequest, 421, "misdirected_request"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (BadRequest, 400, "bad_request"),
    (LimitExceededError, 400, "limit_exceeded"),
    (RunError, 400, "bad_request"),
    (TransientError, 503, "unavailable"),
]


def status_of(error: BaseException) -> tuple[int, str] | None:
    """The HTTP status and error code for ``error``, or None for an unexpected error."""
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return status, code
    return None
