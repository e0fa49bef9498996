"""What ``refluxo serve`` adds to its log: when a failed attempt is retried, when a timer
fires.

The runtime logs a failed attempt (``attempt_failed``), a pause (a ``step`` whose outcome is
``paused``) and a failed run (``run_failed``) with the run id and node. Someone watching a
local server also wants to know *when* the run moves on: :class:`DueTimes` adds the pending
retry's time (``nextRetryAt``) or the timer's (``resumeAt``) to those lines, read from the
run as committed, unless the event carries them already. The text log writes them as ISO
times (:mod:`refluxo.host.logs`). Only these rare events cost a read; a run that moved on
meanwhile simply gets no time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from refluxo.runtime.events_log import EVENT_FIELD

if TYPE_CHECKING:
    from refluxo.runtime.service import RunService

DueTimes_ = Callable[[str], Mapping[str, float]]


def _wants_times(fields: Mapping[str, Any]) -> bool:
    event = fields.get("event")
    if "nextRetryAt" in fields or "resumeAt" in fields:
        return False
    return event == "attempt_failed" or (event == "step" and fields.get("outcome") == "paused")


class DueTimes(logging.Filter):
    """Adds ``nextRetryAt`` / ``resumeAt`` to failed-attempt and pause events.

    Args:
        due: the run's pending times by run id (see :func:`service_due_times`); any error
            it raises leaves the line as it was.
    """

    def __init__(self, due: DueTimes_) -> None:
        super().__init__()
        self.due = due

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, EVENT_FIELD, None)
        if isinstance(fields, Mapping) and _wants_times(fields):
            try:
                times = self.due(str(fields.get("runId")))
            except Exception:  # a log line never fails a delivery
                times = {}
            if times:
                setattr(record, EVENT_FIELD, {**fields, **times})
        return True


def service_due_times(service: RunService) -> DueTimes_:
    """The pending retry or timer time of a run as ``service`` reads it."""
    from refluxo.metadata import RESUME_AT
    from refluxo.model import SnapshotStatus

    def due(run_id: str) -> Mapping[str, float]:
        snapshot = service.get(run_id).snapshot
        retry = snapshot.retry_state
        if snapshot.status == SnapshotStatus.ERROR and retry is not None:
            return {} if retry.next_retry_at is None else {"nextRetryAt": retry.next_retry_at}
        at = snapshot.metadata.get(RESUME_AT)
        if snapshot.status == SnapshotStatus.PAUSED and isinstance(at, int | float):
            return {"resumeAt": at}
        return {}

    return due


__all__ = ["DueTimes", "service_due_times"]
