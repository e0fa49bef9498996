"""Operational events as log records with machine-readable fields.

The runtime says *what happened* (a step's outcome, a failed attempt, a failed or stalled
run) through :func:`log_event`; a host decides how it is written: plain text on a terminal,
one JSON object per line for Cloud Logging (``refluxo.host.logs``). The fields travel on
the log record as ``record.refluxo``, so any ``logging`` handler can read them.

The events (their names and fields are what ``terraform/monitoring.tf`` counts):

* ``step``: one line per step a delivery committed (``node``, ``version`` the step
  produced, ``outcome``: ``completed``, ``paused``, ``retrying``, ``failed``; ``attempt``;
  ``status``, the run's status after it), and one per delivery that committed nothing
  (``stale``, ``lost_race``, ``unknown_run``);
* ``attempt_failed``: a node's attempt failed and will be retried (``attempt``, ``error``);
* ``run_failed``: a delivery left the run failed (``failedReason``);
* ``run_cancelled``: a caller cancelled the run (``failedReason``: the reason given); not
  an error of the run, so not counted with ``run_failed``;
* ``run_stalled``: the reconciler found a run's next step overdue and scheduled it again;
* ``children_joined``: the child runs a node waited for have ended (``ended``,
  ``failed``) and the run goes on.

Texts come from what was committed (secrets masked), never from an exception itself, and
are cut at :data:`MAX_TEXT` characters so that a line stays far below Cloud Logging's entry
size limit.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal

EVENT_FIELD: Final = "refluxo"
"""The attribute of a :class:`logging.LogRecord` holding an event's fields."""

Event = Literal[
    "step", "attempt_failed", "run_failed", "run_cancelled", "run_stalled", "children_joined"
]
"""The events operators count and alert on (see ``terraform/monitoring.tf``)."""

MAX_TEXT: Final = 2000
"""The longest text (message or field) an event line carries; longer ones are cut."""

logger = logging.getLogger("refluxo.events")


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text``, cut to ``limit`` characters (marked) if longer."""
    if len(text) <= limit:
        return text
    return text[: limit - 20] + f"... ({len(text)} chars)"


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
    """Log ``message`` with the event's fields (``None`` fields are left out, texts
    clipped)."""
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
        clip(message),
        extra={
            EVENT_FIELD: {
                key: clip(value) if isinstance(value, str) else value
                for key, value in fields.items()
                if value is not None
            }
        },
        stacklevel=2,  # the caller's file and line, not this function's
    )


__all__ = ["EVENT_FIELD", "MAX_TEXT", "Event", "clip", "log_event", "logger"]
