"""The opaque cursor of run listings: the (createdAt, runId) of the last run of a page."""

from __future__ import annotations

import base64
import binascii
import json

from refluxo.runtime.errors import BadRequest
from refluxo.runtime.ids import RUN_ID_PATTERN

_MAX_TIME = 2**62


MAX_CURSOR_LENGTH = 512
"""The longest cursor read: one encodes a time and a run id of at most 128 characters."""


def encode_cursor(created_at: int, run_id: str) -> str:
    text = json.dumps([created_at, run_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The position a cursor encodes; raises :class:`BadRequest` for anything else."""
    if len(cursor) > MAX_CURSOR_LENGTH:  # a real one is far shorter; no parser sees more
        raise BadRequest("invalid cursor")
    try:
        created_at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error, RecursionError) as err:
        raise BadRequest("invalid cursor") from err
    valid = (
        type(created_at) is int
        and 0 <= created_at < _MAX_TIME
        and isinstance(run_id, str)
        and RUN_ID_PATTERN.fullmatch(run_id) is not None  # the rule every run id follows
    )
    if not valid:
        raise BadRequest("invalid cursor")
    return created_at, run_id
