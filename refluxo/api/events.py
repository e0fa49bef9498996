"""Starting, resuming and cancelling runs from messages (Pub/Sub on Google Cloud).

Message contract. The message data is a UTF-8 JSON object; attributes may supply or
override ``action``, ``workflow`` and ``runId``:

* ``{"action": "start", "workflow": NAME, "input": ANY, "runId": ID?}`` (``action``
  defaults to ``start``). Without a ``runId`` the run id is ``msg-<messageId>``, so a
  redelivered message never starts a second run.
* ``{"action": "resume", "runId": ID, "payload": ANY, "version": N?}``: resumes a paused
  run; with ``version`` only if the run is still at that version.
* ``{"action": "cancel", "runId": ID, "reason": TEXT?}``.

A message that can never succeed (not JSON, missing fields, unknown workflow or run, a run
that moved on) is logged with its reason and acknowledged: retrying it would not help.
A failure of the store or scheduler raises, so the platform redelivers the message (and,
after its maximum attempts, dead-letters it).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from refluxo.runtime.errors import RunError
from refluxo.runtime.service import RunService

logger = logging.getLogger("refluxo.events")

MAX_MESSAGE_BYTES = 1 << 20


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


def _decode(data: bytes, attributes: Mapping[str, str]) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise _Rejected(f"message data over {MAX_MESSAGE_BYTES} bytes")
    if data.strip():
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise _Rejected(f"message data is not JSON: {err}") from err
    else:
        body = {}
    if not isinstance(body, dict):
        raise _Rejected("message data must be a JSON object")
    for key in ("action", "workflow", "runId"):
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


def handle_message(
    service: RunService, data: bytes, attributes: Mapping[str, str], message_id: str
) -> EventResult:
    """Apply one message; see the module docstring for the contract."""
    try:
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
            version = body.get("version")
            if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
                raise _Rejected("'version' must be an integer")
            service.resume(run_id, body.get("payload"), expected_version=version)
            return EventResult(EventOutcome.RESUMED, run_id)
        if action == "cancel":
            run_id = _required(body, "runId")
            service.cancel(run_id, _optional(body, "reason") or "Cancelled")
            return EventResult(EventOutcome.CANCELLED, run_id)
        raise _Rejected(f"unknown action {action!r} (use start, resume or cancel)")
    except (_Rejected, RunError) as err:
        logger.warning("message %s rejected and acknowledged: %s", message_id, err)
        return EventResult(EventOutcome.REJECTED, reason=str(err))
