"""The vocabulary of one step: clocks, positions, failures and bounded times.

Shared by the engine (which moves snapshots) and the durable runtime (which stores them),
so that "fail this run", "how far ahead may a run wait" and "which visit of a node is this"
each have one definition.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from refluxo.metadata import FAILED_REASON, PAUSED_REASON, PAUSED_WITH, RESUME_AT
from refluxo.model import Snapshot, SnapshotStatus, as_output, trusted

Clock = Callable[[], int]
"""Returns the current time in epoch milliseconds."""

MAX_DELAY_MS = 100 * 365 * 24 * 3600 * 1000
"""The longest a run may wait: a retry delay or a timed pause beyond 100 years (or not a
finite number) fails the node with a clear error instead of reaching a store that could not
hold the time."""


def checked_resume_at(value: Any, now: int) -> int:
    """A timed pause's end (epoch ms) as an int, if finite and within 100 years of now.

    A time in the past fires at once; one more than 100 years away either way is refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"resume_at must be epoch milliseconds, got {value!r}")
    if not math.isfinite(value) or abs(value - now) > MAX_DELAY_MS:
        raise ValueError(
            f"resume_at {value!r} is out of range: at most {MAX_DELAY_MS} ms (100 years) from now"
        )
    return int(value)


@dataclass(frozen=True, slots=True)
class StepPosition:
    """Where the step being executed stands; see :func:`step_position`.

    ``visit`` identifies this visit of the node within the run: the number of results the
    node had before the visit began. It is the same for every attempt (retries) and every
    re-execution (a pause resumed, a redelivery) of the visit, and different for each
    visit of the node (loops).
    """

    workflow_id: str
    node_id: str
    version: int
    attempt: int
    visit: int
    now: int


current_position: ContextVar[StepPosition | None] = ContextVar(
    "refluxo_step_position", default=None
)


def step_position() -> StepPosition | None:
    """The step the calling executor (or hook, or transform) belongs to, or None."""
    return current_position.get()


def fail(snapshot: Snapshot, reason: str) -> Snapshot:
    """``snapshot`` failed for ``reason`` (a new version, the reason in metadata).

    Keys that no longer hold (why it paused, when a timed pause would end) are removed.
    """
    metadata = {
        key: value
        for key, value in snapshot.metadata.items()
        if key not in (PAUSED_REASON, RESUME_AT, PAUSED_WITH)
    }
    metadata[FAILED_REASON] = reason
    return evolve(
        snapshot,
        {
            "status": SnapshotStatus.FAILED,
            "version": snapshot.version + 1,
            "retry_state": None,
            "metadata": metadata,
        },
    )


def pause_data(data: Any) -> Any:
    """``data``, what a node pauses with, as the snapshot's metadata keeps it
    (``metadata["pausedWith"]``): its JSON form, as for an output (see
    :func:`~refluxo.model.as_output`), and no ``NaN`` or infinity. Raises ``TypeError``
    for what has no JSON form; too deep or a lone surrogate, their own errors."""
    try:
        data = as_output(data, "it")
    except TypeError as err:
        raise TypeError(f"what a node pauses with must be JSON data: {err}") from None
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"what a node pauses with must be JSON data: {err}") from None
    return data


def without(metadata: dict[str, Any], *keys: str) -> dict[str, Any]:
    if not any(key in metadata for key in keys):
        return metadata
    return {key: value for key, value in metadata.items() if key not in keys}


def checked_delay(value: Any, what: str) -> int:
    """``value`` (ms) as an int if it is a finite number in [0, MAX_DELAY_MS]; else raise.

    Negative delays mean "now" (0).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of milliseconds, got {value!r}")
    _check_range(value, what)
    return max(0, int(value))


def _check_range(value: int | float, what: str) -> None:
    """Raise ValueError for a delay that is not finite or over :data:`MAX_DELAY_MS`, naming
    it (an integer too large for a float, or to print, is compared as it is)."""
    if (isinstance(value, float) and not math.isfinite(value)) or value > MAX_DELAY_MS:
        shown = repr(value) if isinstance(value, float) or value < 10**30 else "over 10**30"
        raise ValueError(
            f"{what} of {shown} ms is out of range: at most {MAX_DELAY_MS} ms (100 years)"
        )


def retry_time(now: int, delay: Any, what: str) -> int | float:
    """When a retry is due: ``now + delay`` ms, unrounded, as ``@refluxo/core`` writes it.

    ``@refluxo/core`` writes ``Date.now() + delay`` as is, so an interval of 1.5 ms gives a
    fractional ``nextRetryAt``; an integral time stays an ``int`` (JSON ``1700000000001``,
    not ``1700000000001.0``). The delay is checked as :func:`checked_delay` checks it
    (finite, at most 100 years; a negative delay is "now").
    """
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"{what} must be a number of milliseconds, got {delay!r}")
    _check_range(delay, what)
    due = now + max(0, delay)
    return int(due) if isinstance(due, float) and due.is_integer() else due


def evolve(snapshot: Snapshot, changes: dict[str, Any]) -> Snapshot:
    """A copy of ``snapshot`` with ``changes`` applied, without re-validation.

    Equivalent to ``snapshot.model_copy(update=changes)`` (the engine only writes values of
    the right types), at half the cost: this runs on every step.
    """
    fields = snapshot.__dict__.copy()
    fields.update(changes)
    # Unknown top-level keys ride along, as ``{...snapshot}`` keeps them in @refluxo/core.
    return trusted(Snapshot, fields, snapshot.__pydantic_extra__)


def wall_clock_ms() -> int:
    """The real clock: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


MAX_ERROR_TEXT = 32_768
"""Characters of an error's text a snapshot keeps (in the result, and in the failure's
reason): a node raising a 50 MB message must not write it at every attempt."""

REDACTION_WINDOW = 1_048_576
"""Characters of an error's text looked at by ``transform_error`` (redaction) before it is
cut to :data:`MAX_ERROR_TEXT`: a secret across the first cut is then dropped by the second."""


def describe_error(error: BaseException, limit: int | None = MAX_ERROR_TEXT) -> str:
    """The error text stored in a node result: ``"TypeName: message"``, at most ``limit``
    characters (then marked as cut; ``None``: whole). A ``__str__`` that raises or returns
    no string gives a text saying so, never an error of its own."""
    name = type(error).__name__
    try:
        message = str(error)
    except Exception as unreadable:
        message = f"(message unreadable: its __str__ raised {type(unreadable).__name__})"
    text = f"{name}: {message}" if message else name
    return text if limit is None else cut_text(text, limit)


def cut_text(text: str, limit: int = MAX_ERROR_TEXT, total: int | None = None) -> str:
    """``text``, or its first ``limit`` characters marked as cut. ``total``: given when
    ``text`` was made from the first part of a longer text (an error text masked from its
    first :data:`REDACTION_WINDOW` characters), that text's length."""
    if len(text) <= limit and total is None:
        return text
    return f"{text[:limit]}... (cut: {len(text) if total is None else total} characters in all)"
