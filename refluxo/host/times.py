"""Times as a person reads them: ISO 8601 in UTC, and how long ago or from now.

Runs store times as epoch milliseconds (the wire form shared with ``@refluxo/core``); the
command never prints those, but ``2026-01-02T10:00:00Z (in 5 s)``, so that a reader need
not convert anything and a script can still parse the ISO part.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """The current time in epoch milliseconds, as runs store times."""
    return int(time.time() * 1000)


def iso(epoch_ms: float) -> str:
    """``epoch_ms`` as ISO 8601 in UTC to the second, ``2026-01-02T10:00:00Z``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def span(seconds: float) -> str:
    """A duration in its largest sensible unit: ``850 ms``, ``12 s``, ``4 min``, ``3 h``,
    ``2 d``."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"


def relative(epoch_ms: float, now: float | None = None) -> str:
    """``in 5 s`` or ``3 min ago`` (``now`` in epoch ms, the current time by default)."""
    delta = (epoch_ms - (now_ms() if now is None else now)) / 1000
    if abs(delta) < 1:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def when(epoch_ms: float, now: float | None = None) -> str:
    """``2026-01-02T10:00:00Z (in 5 s)``: the ISO time and how far it is."""
    return f"{iso(epoch_ms)} ({relative(epoch_ms, now)})"


__all__ = ["iso", "now_ms", "relative", "span", "when"]
