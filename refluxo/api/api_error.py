"""What a client of the run API raises when the API refuses: :class:`ApiError`.

Its own module, apart from :mod:`refluxo.api.client` (which loads the response models and
pydantic), so that a command showing a stored run, and the command's error handling, can
raise and catch it without loading them.
"""

from __future__ import annotations

from refluxo.api.errors import status_of
from refluxo.runtime.errors import RunError


class ApiError(Exception):
    """The API answered with an error (status, code and message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, error: RunError) -> ApiError:
        """The error the HTTP API would answer for ``error``, raised in-process."""
        status, code = status_of(error) or (400, "bad_request")
        return cls(status, code, str(error))


class ServerUnreachable(Exception):
    """A client of the run API got no answer it could read: the connection was refused,
    timed out or dropped, or the answer was not HTTP or not JSON."""
