"""Operational events as log records with machine-readable fields.

The runtime says *what happened* (a step's outcome, a failed attempt, a failed or stalled
run) through :func:`log_event`; a host decides how it is written: plain text on a terminal,
one JSON object per line for Cloud Logging (``refluxo.host.logs``). The fields travel on
the log record as ``record.refluxo``, so any ``logging`` handler can read them.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

EVENT_FIELD: Final = "refluxo"
"""The attribute of a :class:`logging.LogRecord` holding an event's fields."""

Event = Literal["step", "attempt_failed", "run_failed", "run_stalled"]
"""The events operators count and alert on (see ``terraform/monitoring.tf``)."""

logger = logging.getLogger("refluxo.events")


def log_event(
    event: Event,
    message: str,
    *,
    level: int = logging.INFO,
    run_id: str,
    workflow: str | None = None,
    node: str | None = None,
    version: int | None = None,
    outcome: str | None = None,
    **extra: Any,
) -> None:
    """Log ``message`` with the event's fields (``None`` fields are left out)."""
    if not logger.isEnabledFor(level):
        return
    fields: dict[str, Any] = {
        "event": event,
        "runId": run_id,
        "workflow": workflow,
        "node": node,
        "version": version,
        "outcome": outcome,
        **extra,
    }
    logger.log(
        level,
        message,
        extra={EVENT_FIELD: {key: value for key, value in fields.items() if value is not None}},
    )


__all__ = ["EVENT_FIELD", "Event", "log_event", "logger"]
