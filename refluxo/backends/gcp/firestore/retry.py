"""Bounded retries of Firestore calls, and which failures are worth retrying."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions as google_exceptions

from refluxo.errors import TransientError

T = TypeVar("T")

REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    google_exceptions.FailedPrecondition,
    google_exceptions.AlreadyExists,
    google_exceptions.NotFound,
)
"""How Firestore refuses a guarded batch without applying any of it: the head changed
since it was read (or vanished), or a result document exists already."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    google_exceptions.Aborted,
    google_exceptions.DeadlineExceeded,
    google_exceptions.ServiceUnavailable,
    google_exceptions.InternalServerError,
)
"""Failures worth retrying: contention, timeouts and the service being briefly unavailable."""


def is_transient(error: BaseException) -> bool:
    """True if ``error`` or an error it was raised from or while handling is transient.

    The client wraps exhausted contention retries in a ``ValueError`` raised *from* the last
    ``Aborted``, and a failed rollback is raised *while handling* the original failure, so
    the whole chain is examined.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, TRANSIENT_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class Retry:
    """Runs an operation, retrying transient failures a bounded number of times."""

    def __init__(
        self, max_attempts: int, backoff_ms: float, sleep: Callable[[float], None]
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff_ms = backoff_ms
        self.sleep = sleep

    def backoff(self, attempt: int) -> None:
        """Wait before attempt number ``attempt`` (0-based; the first one does not wait)."""
        if attempt:
            delay_ms = min(1_000.0, self.backoff_ms * 2 ** (attempt - 1))
            self.sleep(delay_ms * random.uniform(0.5, 1.0) / 1000)

    def run(self, operation: str, action: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            self.backoff(attempt)
            try:
                return action()
            except Exception as err:
                if not is_transient(err):
                    raise
                last = err
        raise self.exhausted(operation, last) from last

    def exhausted(self, operation: str, last: BaseException | None) -> TransientError:
        return TransientError(
            f"Firestore {operation} failed after {self.max_attempts} attempts "
            f"(contention or unavailability): {last}"
        )
