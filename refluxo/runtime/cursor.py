"""The opaque cursor of run listings: the (createdAt, runId) of the last run of a page."""

from __future__ import annotations

import base64
import binascii
import json

from refluxo.runtime.errors import BadRequest

_MAX_TIME = 2**62


def encode_cursor(created_at: int, run_id: str) -> str:
    text = json.dumps([created_at, run_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The position a cursor encodes; raises :class:`BadRequest` for anything else."""
    try:
        created_at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error) as err:
        raise BadRequest("invalid cursor") from err
    valid = (
        type(created_at) is int
        and 0 <= created_at < _MAX_TIME
        and isinstance(run_id, str)
        and 0 < len(run_id) <= 128
    )
    if not valid:
        raise BadRequest("invalid cursor")
    return created_at, run_id
