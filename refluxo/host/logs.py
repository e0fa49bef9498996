"""How a process writes its log: one JSON object per line on Google Cloud, text elsewhere.

Cloud Logging reads each line a Cloud Run revision writes to stdout or stderr that is a JSON
object as a structured entry: ``severity``, ``message``, ``time``,
``logging.googleapis.com/trace`` and ``logging.googleapis.com/spanId`` are the entry's own;
every other field lands in ``jsonPayload``, where the log-based metrics of
``terraform/monitoring.tf`` read ``event`` and ``workflow``. :class:`JsonFormatter` writes
such lines: the record's level as the severity, its message, time and logger, the fields of
a runtime event (``refluxo.runtime.events_log``), the exception's traceback if any, and the
trace of the request being served (:data:`refluxo.api.trace.current_trace`).

:class:`TextFormatter` writes the same records as readable lines, event fields included
(``... ERROR run_failed run=abc workflow=w node=n: reason``), for ``refluxo serve`` and a
terminal. :func:`configure_logging` chooses: JSON on the Google Cloud backend or with
``REFLUXO_LOG_FORMAT=json``, text otherwise (``REFLUXO_LOG_FORMAT=text`` forces it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from refluxo.api.trace import current_trace
from refluxo.host.settings import ConfigurationError
from refluxo.runtime.events_log import EVENT_FIELD

LOG_FORMATS: Final = ("json", "text")

TRACE_FIELD: Final = "logging.googleapis.com/trace"
SPAN_FIELD: Final = "logging.googleapis.com/spanId"
SAMPLED_FIELD: Final = "logging.googleapis.com/trace_sampled"
SOURCE_FIELD: Final = "logging.googleapis.com/sourceLocation"

_SEVERITIES: Final = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
    (logging.DEBUG, "DEBUG"),
)


def severity(level: int) -> str:
    """Cloud Logging's severity for a ``logging`` level (a custom level: the one below)."""
    for threshold, name in _SEVERITIES:
        if level >= threshold:
            return name
    return "DEFAULT"


def event_fields(record: logging.LogRecord) -> Mapping[str, Any]:
    """The fields of the runtime event ``record`` carries (none for an ordinary record)."""
    fields = getattr(record, EVENT_FIELD, None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line, as Cloud Logging reads it.

    Args:
        project: the Google Cloud project the trace belongs to (``GOOGLE_CLOUD_PROJECT``);
            without one, no trace is written (Cloud Logging wants its resource name).
    """

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project or None

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": _clip(record.getMessage(), MAX_MESSAGE_CHARS),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
        }
        for key, value in event_fields(record).items():
            line.setdefault(str(key), value)
        exception = self._exception_text(record)
        if exception:
            line["exception"] = _clip(exception, MAX_EXCEPTION_CHARS)
        trace = current_trace.get()
        if trace is not None and self.project:
            line[TRACE_FIELD] = f"projects/{self.project}/traces/{trace.trace_id}"
            if trace.span_id is not None:
                line[SPAN_FIELD] = trace.span_id
            line[SAMPLED_FIELD] = trace.sampled
        line[SOURCE_FIELD] = {
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
        }
        return _dumps(line)

    def _exception_text(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


MAX_MESSAGE_CHARS: Final = 16_000
"""The longest message a line carries; Cloud Logging refuses entries over 256 KB."""

MAX_EXCEPTION_CHARS: Final = 32_000
"""The longest traceback a line carries (its end, where the error is, is kept)."""


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}... [{len(text) - limit} characters cut] ...{text[-half:]}"


def _one_line(text: str) -> str:
    """``text`` with its line breaks escaped, so that it cannot start a line of its own."""
    return text.translate(_LINE_BREAKS)


_LINE_BREAKS = {
    ord(c): f"\\u{ord(c):04x}" if c not in "\r\n" else ("\\n" if c == "\n" else "\\r")
    for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
}


def _dumps(line: dict[str, Any]) -> str:
    """``line`` as one line of JSON: ASCII only, every value JSON can hold as itself, the
    others (NaN, objects) as their text."""
    try:
        return json.dumps(line, ensure_ascii=True, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        safe = {
            key: value if isinstance(value, str | int | bool) or value is None else repr(value)
            for key, value in line.items()
        }
        return json.dumps(safe, ensure_ascii=True, default=str)


TEXT_NAMES: Final = {"runId": "run"}
"""Event fields shown under a shorter name in text lines."""


TIME_FIELDS: Final = frozenset({"nextRetryAt", "resumeAt"})
"""Event fields holding epoch milliseconds: text lines show them as ISO times."""


def _iso(epoch_ms: float) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def _text_value(value: Any, key: str = "") -> str:
    if key in TIME_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _iso(value)
        except (OverflowError, OSError, ValueError):
            pass
    if isinstance(value, str):
        plain = value and value.isprintable() and not any(c in value for c in ' ="\\')
        return value if plain else json.dumps(value)
    return json.dumps(value, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines: time, level, then an event's name and fields, then the message.

    ``2026-01-02 10:00:00,123 ERROR run_failed run=abc workflow=w node=n: reason``; an
    ordinary record: ``... WARNING refluxo.http: message``. A field whose value is the
    message itself is not repeated; a time (:data:`TIME_FIELDS`) is written in ISO 8601.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    # A traceback keeps its lines, each indented, so none can pass for a record of its own.
    def formatException(self, ei: Any) -> str:
        text = _clip(super().formatException(ei), MAX_EXCEPTION_CHARS)
        return "\n".join("    " + _one_line(line) for line in text.split("\n"))

    def formatMessage(self, record: logging.LogRecord) -> str:
        # A message (an error text, a node id) may hold line breaks: escaped, so that no
        # caller-supplied text can forge a line of its own.
        record.message = _one_line(_clip(record.message, MAX_MESSAGE_CHARS))
        fields = event_fields(record)
        if not fields:
            return super().formatMessage(record)
        message = record.message
        shown = [str(fields.get("event", "event"))]
        for key, value in fields.items():
            if key == "event" or value == message:
                continue
            shown.append(f"{TEXT_NAMES.get(key, key)}={_text_value(value, key)}")
        return f"{record.asctime} {record.levelname} {' '.join(shown)}: {message}"


def log_format(env: Mapping[str, str], *, cloud: bool) -> str:
    """``json`` or ``text``: ``REFLUXO_LOG_FORMAT`` if set, else JSON on Google Cloud."""
    chosen = (env.get("REFLUXO_LOG_FORMAT") or "").strip().lower()
    if not chosen:
        return "json" if cloud else "text"
    if chosen not in LOG_FORMATS:
        raise ConfigurationError(
            f"REFLUXO_LOG_FORMAT must be 'json' or 'text', got {env.get('REFLUXO_LOG_FORMAT')!r}"
        )
    return chosen


def formatter_for(fmt: str, project: str | None = None) -> logging.Formatter:
    """The formatter of log format ``fmt`` (see :data:`LOG_FORMATS`)."""
    return JsonFormatter(project) if fmt == "json" else TextFormatter()


def configure_logging(
    env: Mapping[str, str], *, cloud: bool, stream: TextIO | None = None
) -> logging.Handler:
    """Make the root logger write every record once, in the format ``env`` chooses.

    For a process's entry point (``main.py``, ``refluxo serve``), which owns its logging:
    the root logger's handlers are replaced by one stream handler (stderr by default) at
    ``REFLUXO_LOG_LEVEL`` (INFO by default). The trace's project is
    ``GOOGLE_CLOUD_PROJECT``.

    Raises:
        ConfigurationError: ``REFLUXO_LOG_FORMAT`` or ``REFLUXO_LOG_LEVEL`` is not one.
    """
    fmt = log_format(env, cloud=cloud)
    level_name = (env.get("REFLUXO_LOG_LEVEL") or "INFO").strip().upper()
    level = logging.getLevelNamesMapping().get(level_name)
    if level is None:
        raise ConfigurationError(
            "REFLUXO_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
            f"got {env.get('REFLUXO_LOG_LEVEL')!r}"
        )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(fmt, (env.get("GOOGLE_CLOUD_PROJECT") or "").strip()))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "event_fields",
    "formatter_for",
    "log_format",
    "severity",
]
