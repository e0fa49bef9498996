"""Domain errors to HTTP statuses: the only place that knows both."""

from __future__ import annotations

from refluxo.errors import LimitExceededError, TransientError
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

_STATUS: list[tuple[type[BaseException], int, str]] = [
    (UnknownWorkflow, 404, "unknown_workflow"),
    (RunNotFound, 404, "run_not_found"),
    (RunConflict, 409, "conflict"),
    (PayloadTooLarge, 413, "payload_too_large"),
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
