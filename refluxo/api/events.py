"""Starting, resuming and cancelling runs from messages (Pub/Sub on Google Cloud).

Message contract. The message data is a UTF-8 JSON object, read exactly as an HTTP body is
(:func:`refluxo.api.parsing.parse_json`: no ``NaN`` or infinities, no lone surrogates, at
most :data:`~refluxo.api.parsing.MAX_JSON_DEPTH` levels deep, at most
:data:`MAX_MESSAGE_BYTES`); attributes may supply or override ``action``, ``workflow`` and
``runId``:

* ``{"action": "start", "workflow": NAME, "input": ANY, "runId": ID?}`` (``action``
  defaults to ``start``). Without a ``runId`` the run id is ``msg-<messageId>``, so a
  redelivered message never starts a second run.
* ``{"action": "resume", "runId": ID, "payload": ANY, "version": N?}``: resumes a paused
  run; with ``version`` (a non-negative integer, as over HTTP) only if the run is still at
  that version. Without it, only if the run paused before the message was published (its
  ``publishTime``): a redelivered resume never answers a later pause of the same run.
* ``{"action": "cancel", "runId": ID, "reason": TEXT?}``.

A message that can never succeed (an envelope that is not a Pub/Sub push, data that is not
base64 or not JSON as the API reads it, too large or too deep, missing or malformed fields,
an unknown action, workflow or run, a run that moved on) is logged with its reason, in one
warning line, and acknowledged: retrying it would not help. Only a failure that may pass (a
:class:`~refluxo.errors.TransientError` of the store or scheduler) raises, so that the
platform redelivers the message (and, after its maximum attempts, dead-letters it). An
unexpected exception (a bug, not a property of the message) raises too, so the message
reaches the dead-letter topic rather than being lost.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from refluxo.api.models import MAX_INTEGER
from refluxo.api.parsing import MAX_JSON_DEPTH, json_depth, parse_json
from refluxo.errors import RefluxoError, TransientError
from refluxo.runtime.errors import BadRequest
from refluxo.runtime.service import RunService

logger = logging.getLogger("refluxo.events")

_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,12}))?([Zz]|[+-]\d\d:\d\d)"
)
"""An RFC 3339 time: date, time to the second, an optional fraction, ``Z`` or an offset."""

MAX_MESSAGE_BYTES = 1 << 20
"""The largest message data accepted, decoded (Pub/Sub's own limit is 10 MB)."""

_MAX_BASE64_CHARS = 4 * ((MAX_MESSAGE_BYTES + 2) // 3)
"""The length of :data:`MAX_MESSAGE_BYTES` bytes in base64: longer data is refused unread."""

_ROUTED_BY_ATTRIBUTES = ("action", "workflow", "runId")


class EventOutcome(enum.StrEnum):
    STARTED = "started"
    ALREADY_STARTED = "already_started"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class EventResult:
    outcome: EventOutcome
    run_id: str | None = None
    reason: str | None = None


class _Rejected(Exception):
    pass


def printable(text: object, limit: int = 300) -> str:
    """``text`` safe for one log line: escapes for what no UTF-8 log holds (lone
    surrogates) and for line breaks, cut at ``limit`` characters."""
    shown = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    shown = shown.replace("\r", "\\r").replace("\n", "\\n")
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _decode(data: bytes, attributes: Mapping[str, str]) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise _Rejected(f"message data over {MAX_MESSAGE_BYTES} bytes")
    if data.strip():
        try:
            body = parse_json(data, "message data")
        except BadRequest as err:
            raise _Rejected(f"message data is not JSON: {err}") from None
    else:
        body = {}
    if not isinstance(body, dict):
        raise _Rejected("message data must be a JSON object")
    for key in _ROUTED_BY_ATTRIBUTES:
        if attributes.get(key):
            body[key] = attributes[key]
    return body


def _optional(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _Rejected(f"{key!r} must be a non-empty string")
    return value


def _required(body: Mapping[str, Any], key: str) -> str:
    value = _optional(body, key)
    if value is None:
        raise _Rejected(f"missing {key!r}")
    return value


def _version(body: Mapping[str, Any]) -> int | None:
    """The optional ``version`` of a resume, with the HTTP API's rule (a Count)."""
    version = body.get("version")
    if version is None:
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Rejected("'version' must be an integer")
    if not 0 <= version <= MAX_INTEGER:
        raise _Rejected(f"'version' must be non-negative, at most {MAX_INTEGER}")
    return version


def _apply(
    service: RunService,
    data: bytes,
    attributes: Mapping[str, str],
    message_id: str,
    published_at: int | None,
) -> EventResult:
    body = _decode(data, attributes)
    action = body.get("action", "start")
    if action == "start":
        workflow = _required(body, "workflow")
        run_id = _optional(body, "runId") or f"msg-{message_id}"
        started = service.start(workflow, body.get("input"), run_id=run_id)
        outcome = EventOutcome.STARTED if started.created else EventOutcome.ALREADY_STARTED
        return EventResult(outcome, started.record.run_id)
    if action == "resume":
        run_id = _required(body, "runId")
        version = _version(body)
        if "payload" not in body:  # a message that lost its payload must not answer a pause
            raise _Rejected("a resume needs 'payload' (null to resume without one)")
        service.resume(run_id, body["payload"], expected_version=version, sent_at=published_at)
        return EventResult(EventOutcome.RESUMED, run_id)
    if action == "cancel":
        run_id = _required(body, "runId")
        service.cancel(run_id, _optional(body, "reason") or "Cancelled")
        return EventResult(EventOutcome.CANCELLED, run_id)
    shown = action if isinstance(action, str) else type(action).__name__
    raise _Rejected(f"unknown action {shown!r} (use start, resume or cancel)")


def _rejected(message_id: object, reason: str) -> EventResult:
    logger.warning(
        "message %s rejected and acknowledged: %s", printable(message_id, 200), printable(reason)
    )
    return EventResult(EventOutcome.REJECTED, reason=reason)


def handle_message(
    service: RunService,
    data: bytes,
    attributes: Mapping[str, str],
    message_id: str,
    published_at: int | None = None,
) -> EventResult:
    """Apply one message; see the module docstring for the contract. ``published_at``:
    the message's publish time (epoch ms), when known.

    Logs one line: the outcome, or why the message was rejected (and acknowledged).

    Raises:
        TransientError: the store or scheduler failed for a reason that may pass.
    """
    try:
        result = _apply(service, data, attributes, message_id, published_at)
    except TransientError:
        raise
    except (_Rejected, RefluxoError, ValueError, UnicodeError, RecursionError) as err:
        # RefluxoError: a RunError (unknown workflow or run, conflict, a malformed id) or a
        # LimitExceededError (too deep, too large for the store); ValueError and
        # UnicodeError: whatever the message holds that a store cannot encode.
        return _rejected(message_id, str(err) or type(err).__name__)
    logger.info(
        "message %s: %s %s", printable(message_id, 200), result.outcome.value, result.run_id or ""
    )
    return result


def reject_deep_push(body: bytes, event_id: str) -> EventResult | None:
    """Reject (and log, for acknowledgement) a push whose body nests deeper than
    :data:`~refluxo.api.parsing.MAX_JSON_DEPTH`; ``None`` for any other body.

    For the events function to call before its CloudEvent is parsed: the CloudEvents
    library parses the body with Python's recursive JSON parser, which a few kilobytes of
    brackets exhaust. Pub/Sub never sends such a body (its message data is base64).
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return None
    if json_depth(body.decode("utf-8", "replace")) <= MAX_JSON_DEPTH:
        return None
    return _rejected(event_id, f"the push nests more than {MAX_JSON_DEPTH} levels deep")


def _envelope(envelope: Any) -> tuple[bytes, dict[str, str], str | None, int | None]:
    """The data, attributes, id and publish time of a Pub/Sub push (a CloudEvent's
    ``data``)."""
    if not isinstance(envelope, Mapping):
        raise _Rejected("the event's data is not a Pub/Sub push (an object with 'message')")
    message = envelope.get("message")
    if not isinstance(message, Mapping):
        raise _Rejected("the event carries no Pub/Sub message (an object)")
    message_id = message.get("messageId", message.get("message_id"))
    shown_id = message_id if isinstance(message_id, str) and message_id else None
    attributes = message.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in attributes.items()
    ):
        raise _Rejected("the message's attributes must map strings to strings")
    published_at = _publish_time(message.get("publishTime", message.get("publish_time")))
    encoded = message.get("data")
    if encoded is None or encoded == "":
        return b"", dict(attributes), shown_id, published_at
    if not isinstance(encoded, str):
        raise _Rejected("message data is not base64: not a string")
    if len(encoded) > _MAX_BASE64_CHARS:
        raise _Rejected(f"message data over {MAX_MESSAGE_BYTES} bytes")
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise _Rejected(f"message data is not base64: {err}") from None
    return data, dict(attributes), shown_id, published_at


def _publish_time(stamp: Any) -> int | None:
    """A push's ``publishTime`` in epoch ms: ``None`` when it has none; a time that is not
    RFC 3339 is refused (``_Rejected``) rather than skipped, as a resume's guard reads it.

    RFC 3339 as Pub/Sub writes it (UTC, ``Z``, up to nine fraction digits) and as the
    format allows otherwise (``z``, an offset, a space for ``T``, a leap second).
    """
    if stamp is None:
        return None
    match = _RFC3339.fullmatch(stamp) if isinstance(stamp, str) else None
    if match is None:
        raise _Rejected("the message's publishTime is not an RFC 3339 time")
    day, clock, fraction, zone = match.groups()
    leap = clock.endswith(":60")  # a leap second: the last instant of its minute
    try:
        moment = datetime.fromisoformat(
            f"{day}T{clock[:-2] + '59' if leap else clock}"
            f"{'+00:00' if zone.upper() == 'Z' else zone}"
        )
    except ValueError:
        raise _Rejected("the message's publishTime is not an RFC 3339 time") from None
    milliseconds = int((fraction or "0")[:3].ljust(3, "0"))
    return int(moment.timestamp()) * 1000 + (999 if leap else milliseconds)


def handle_push(service: RunService, envelope: Any, event_id: str) -> EventResult:
    """Apply the Pub/Sub message a push delivery carries (a CloudEvent's ``data``).

    ``event_id`` (the CloudEvent's id) names the message when the push gives no
    ``messageId``. A malformed envelope is rejected and acknowledged like a malformed
    message; see :func:`handle_message`.
    """
    try:
        data, attributes, message_id, published_at = _envelope(envelope)
    except _Rejected as err:
        return _rejected(event_id, str(err))
    return handle_message(service, data, attributes, message_id or event_id, published_at)
