"""The runtime's domain errors: what a run operation refuses, and why.

They carry no transport detail: the HTTP layer (:mod:`refluxo.api.errors`) maps each class
to a status, the Pub/Sub layer acknowledges them as rejected messages, the CLI prints them.
Transient backend failures are :class:`refluxo.errors.TransientError`.
"""

from __future__ import annotations

from refluxo.errors import RefluxoError


class RunError(RefluxoError):
    """Base of the errors a run operation refuses a request with."""


class BadRequest(RunError):
    """The request is malformed (a field, a parameter, a cursor, an id)."""


class UnknownWorkflow(RunError):
    """No workflow of that name is registered."""


class RunNotFound(RunError):
    """No run has that id."""


class RunConflict(RunError):
    """The run is not in a state that allows the request, or it changed meanwhile."""


class PayloadTooLarge(RunError):
    """A body or message is larger than the documented limit."""


class Unauthorized(RunError):
    """The caller presented no credential, or an invalid one."""


class StepUnanswered(RefluxoError):
    """A step was delivered again and again without ever answering (timeouts, crashes).

    Recorded as the node's error, so its retry policy decides, instead of re-running the
    node's side effects for as long as the platform keeps retrying.
    """


class Forbidden(RunError):
    """The caller's credential is valid but not allowed here."""


class GlobalsUnavailable(RefluxoError):
    """The app's globals provider raised (not a :class:`~refluxo.errors.TransientError`):
    the step's node fails this attempt, as if its executor had raised, so its retry policy
    decides. Only the type of what the provider raised is told: its text may quote a
    secret, and without the globals nothing could mask it."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(
            f"the app's globals could not be read: its provider raised "
            f"{type(raised).__name__} (message withheld)"
        )
