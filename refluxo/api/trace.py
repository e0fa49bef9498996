"""The trace of the request being served, for the log lines written while serving it.

Google's front ends (Cloud Run, Cloud Tasks, Pub/Sub push) send
``X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS``. :class:`~refluxo.api.http.HttpApi`
reads it for each request into :data:`current_trace` with :func:`traced`, and resets it when
the request ends, so a server thread serving the next request never carries the previous
one's trace. The deliveries a request runs on the runtime's event loop inherit it (the loop
copies the caller's context). A log formatter (``refluxo.host.logs``) reads it to correlate
its lines with the request in Cloud Logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

TRACE_HEADER: Final = "X-Cloud-Trace-Context"

_HEADER = re.compile(r"([0-9a-fA-F]{1,32})(?:/([0-9]{1,20}))?(?:;o=([0-9]{1,3}))?")
_MAX_SPAN = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Trace:
    """A request's trace: its id (hex), its span (16 hex digits) if any, and whether the
    platform samples it."""

    trace_id: str
    span_id: str | None = None
    sampled: bool = False


current_trace: ContextVar[Trace | None] = ContextVar("refluxo_trace", default=None)
"""The trace of the request this code serves, or None (no request, or no header)."""


def parse_trace_header(value: str | None) -> Trace | None:
    """The trace ``X-Cloud-Trace-Context`` names, or None if absent or malformed.

    Anything but a hex trace id, an optional decimal span id (written as the 16 hex digits
    Cloud Logging expects) and an optional ``;o=`` flag is refused: the header is the
    caller's text, and it goes into every log line of the request.
    """
    if not value:
        return None
    match = _HEADER.fullmatch(value.strip())
    if match is None:
        return None
    trace_id, span, options = match.groups()
    span_id = None
    if span is not None and 0 < int(span) <= _MAX_SPAN:
        span_id = f"{int(span):016x}"
    sampled = options is not None and int(options) & 1 == 1
    return Trace(trace_id, span_id, sampled)


@contextmanager
def traced(header: str | None) -> Iterator[Trace | None]:
    """Serve one request under the trace ``header`` names (None: no trace), then restore
    what was current before."""
    token = current_trace.set(parse_trace_header(header))
    try:
        yield current_trace.get()
    finally:
        current_trace.reset(token)


__all__ = ["TRACE_HEADER", "Trace", "current_trace", "parse_trace_header", "traced"]
