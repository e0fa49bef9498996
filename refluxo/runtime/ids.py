"""Names derived from (run, version): delivery names and idempotency keys.

Delivery names are hashes, not ``run-42-v7``: Cloud Tasks (like most queues keyed by name)
shards by name, and sequential names pile onto one shard. Hashing the pair also makes
scheduling idempotent for free: the same (run, version) always yields the same name.
"""

from __future__ import annotations

import hashlib
import re

from refluxo.runtime.errors import BadRequest

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""Run ids chosen by callers: 1-128 characters, letters, digits and ``._:-`` (ASCII only;
always matched with ``fullmatch``, so a trailing newline is refused)."""

RUN_ID_RULE = (
    "runId must be 1-128 characters: ASCII letters, digits and '._:-', "
    "starting with a letter or digit"
)


def delivery_name(run_id: str, version: int, due_at: int = 0, hop: int = 0) -> str:
    """A 32-hex-digit name for the delivery of ``run_id`` at ``version`` due at ``due_at``.

    ``hop`` distinguishes the links of a delay chained across several deliveries (a queue
    with a maximum delay), which must not collide with each other.
    """
    key = f"{run_id}\x00{version}\x00{due_at}\x00{hop}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def idempotency_key(run_id: str, node_id: str, visit: int) -> str:
    """The key a node attaches to its side effects: one per visit of a node in a run.

    A hash, not ``f"{run}:{node}:{visit}"``: run ids may contain ``:`` and node ids anything,
    so a joined text could be the same for two different (run, node) pairs. 32 hex digits
    fit every service's key format (Stripe, SQS deduplication ids, database columns).
    """
    key = f"{run_id}\x00{node_id}\x00{visit}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a valid caller-chosen run id; else raise :class:`BadRequest`.

    The one check every entry (HTTP, Pub/Sub, the CLI, the service) applies.
    """
    if not isinstance(run_id, str) or RUN_ID_PATTERN.fullmatch(run_id) is None:
        raise BadRequest(RUN_ID_RULE)
    return run_id
