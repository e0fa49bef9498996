"""Node types every app has: ``trigger`` (the run's input) and ``wait`` (a durable timer).

``wait`` is a durable timer: it pauses the run until a time, and the runtime resumes it
then, however far away (the scheduler chains deliveries past any queue's maximum delay).
A timer resumes the node with the payload ``{"timerFired": True, "resumeAt": ms}``; any
other payload (``POST /runs/{id}/resume``) ends the wait early.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from refluxo.definitions import NodeDefinition
from refluxo.metadata import RESUME_AT
from refluxo.model import StepResult
from refluxo.steps import checked_delay, checked_resume_at, step_position, wall_clock_ms

TIMER_FIRED = "timerFired"

_UNITS_MS = {"ms": 1, "seconds": 1000, "minutes": 60_000, "hours": 3_600_000, "days": 86_400_000}


def timer_payload(resume_at: int) -> dict[str, Any]:
    """The payload a timed pause is resumed with when its time comes."""
    return {TIMER_FIRED: True, RESUME_AT: resume_at}


def _now() -> int:
    position = step_position()
    return position.now if position is not None else wall_clock_ms()


def _deadline(data: Any, now: int) -> int:
    if not isinstance(data, Mapping):
        raise ValueError(
            "wait needs data like {'seconds': 30} or {'until': '2030-01-01T00:00:00Z'}"
        )
    if "until" in data:
        until = data["until"]
        if isinstance(until, int | float) and not isinstance(until, bool):
            return checked_resume_at(until, now)
        if isinstance(until, str):
            try:
                parsed = datetime.fromisoformat(until.replace("Z", "+00:00"))
            except ValueError as err:
                raise ValueError(f"wait: 'until' is not an ISO 8601 time: {until!r}") from err
            if parsed.tzinfo is None:
                raise ValueError(f"wait: 'until' needs a timezone (e.g. 'Z'): {until!r}")
            return int(parsed.timestamp() * 1000)
        raise ValueError(f"wait: 'until' must be epoch milliseconds or ISO 8601, got {until!r}")
    total = 0.0
    found = False
    for unit, factor in _UNITS_MS.items():
        if unit in data:
            amount = data[unit]
            if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
                raise ValueError(f"wait: {unit!r} must be a non-negative number, got {amount!r}")
            total += amount * factor
            found = True
    if not found:
        raise ValueError(f"wait needs one of 'until', {', '.join(map(repr, _UNITS_MS))}")
    return now + checked_delay(total, "wait")


def wait(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Pause until the time in ``data``; output when and how the wait ended."""
    if isinstance(payload, Mapping) and payload.get(TIMER_FIRED) is True:
        return StepResult({"waitedUntil": payload.get(RESUME_AT), "endedBy": "timer"})
    if payload is not None:
        return StepResult({"endedBy": "resume", "payload": payload})
    return StepResult(pause=True, resume_at=_deadline(data, _now()))


def trigger(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Output the run's input (the first step's payload), else the node's own data.

    The usual first node: later nodes read the input as ``nodes.<id>.output``.
    """
    return StepResult(payload if payload is not None else data)


BUILTIN_NODE_TYPES: dict[str, NodeDefinition] = {
    "wait": NodeDefinition(wait),
    "trigger": NodeDefinition(trigger),
}
