"""Runtime errors; each maps to one HTTP status in the API."""

from __future__ import annotations

from refluxo.errors import RefluxoError


class RuntimeErrorBase(RefluxoError):
    """Base of the runtime's errors; ``status`` is the HTTP status the API answers with."""

    status = 400
    code = "bad_request"


class BadRequest(RuntimeErrorBase):
    """The request is malformed (body, parameters)."""


class UnknownWorkflow(RuntimeErrorBase):
    status = 404
    code = "unknown_workflow"


class RunNotFound(RuntimeErrorBase):
    status = 404
    code = "run_not_found"


class RunConflict(RuntimeErrorBase):
    """The run is not in a state that allows the request, or it changed meanwhile."""

    status = 409
    code = "conflict"


class PayloadTooLarge(RuntimeErrorBase):
    status = 413
    code = "payload_too_large"


class Unauthorized(RuntimeErrorBase):
    status = 401
    code = "unauthorized"


class Forbidden(RuntimeErrorBase):
    status = 403
    code = "forbidden"


class BackendUnavailable(RefluxoError):
    """A store or scheduler failed transiently; the caller should retry (HTTP 503)."""


class StoreError(BackendUnavailable):
    """The store failed after its bounded retries (contention, unavailability)."""


class SchedulerUnavailable(BackendUnavailable):
    """The scheduler refused a delivery for a transient reason."""
