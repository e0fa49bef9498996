"""Snapshots cross between the engines at every status (tests/data/ts_core/snapshots.json).

A TypeScript snapshot, active, waiting for a retry (at a fractional time), paused on a
question, or failed, loads here and resumes to where TypeScript's run ends; and this
engine's snapshot at the same point equals TypeScript's field by field, except where the
README's differences table says otherwise (``version``, ``metadata``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from refluxo import Snapshot, WorkflowEngine
from tests.engine.ts_core import CLOCK, load, order_engine, wire

RECORDED = load("snapshots.json")
STATUSES = ["active", "error", "paused", "failed"]

# Where this engine differs, as the README's table says: `version` grows on every
# transition, and `metadata` drops `pausedReason` once it no longer holds and gives every
# failure a `failedReason`.
OURS_AT_THE_SAME_POINT = {
    "active": {"version": 1, "metadata": {}},
    "error": {"version": 3, "metadata": {"pausedReason": "Retry attempt 1"}},
    "paused": {"version": 5, "metadata": {}},
    "failed": {
        "version": 5,
        "metadata": {"failedReason": "node 'charge' failed after 3 attempts: Error: card declined"},
    },
}
# Resuming TypeScript's snapshot here: the version goes on from TypeScript's.
OURS_FROM_THEIRS = {
    "active": {"version": 3, "metadata": {"pausedReason": "Retry attempt 1"}},
    "error": {"version": 4, "metadata": {}},
    "paused": {"version": 5, "metadata": {}},
    "failed": {"version": 2, "metadata": {"pausedReason": "Retry attempt 2"}},
}


def _engine(status: str) -> WorkflowEngine:
    workflow = RECORDED["failingWorkflow"] if status == "failed" else RECORDED["workflow"]
    return order_engine(workflow, RECORDED["retryPolicy"])


def _payload(status: str) -> Any:
    return RECORDED["resumePayload"] if status == "paused" else None


def _same_but(ours: dict[str, Any], theirs: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every field equal, except those in ``expected``, which hold the values given."""
    assert set(ours) == set(theirs)
    for field in theirs:
        if field in expected:
            assert ours[field] == expected[field], field
        else:
            assert ours[field] == theirs[field], field


def test_the_fixtures_are_in_typescript_wire_form() -> None:
    error = RECORDED["snapshots"]["error"]
    assert error["retryState"]["nextRetryAt"] == CLOCK + 1.5
    assert error["context"]["audit"] == [{"timestamp": CLOCK, "attempt": 1}]  # no output
    assert error["context"]["charge"][0]["output"] is None  # failed attempts write null
    assert "retryState" not in RECORDED["snapshots"]["paused"]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("decode", ["model_validate", "from_json"])
async def test_a_typescript_snapshot_resumes_to_where_typescript_ends(
    status: str, decode: str
) -> None:
    theirs = RECORDED["snapshots"][status]
    text = json.dumps(theirs)
    snapshot = (
        Snapshot.model_validate(theirs) if decode == "model_validate" else Snapshot.from_json(text)
    )
    assert wire(snapshot) == theirs  # read and written back unchanged
    final = await _engine(status).execute(snapshot=snapshot, external_payload=_payload(status))
    _same_but(wire(final), RECORDED["ends"][status], OURS_FROM_THEIRS[status])


async def _ours_at(status: str) -> Snapshot:
    engine = _engine(status)
    snapshot = await engine.execute_step(engine.create_initial_snapshot("order-42", "start"))
    if status == "active":
        return snapshot
    snapshot = await engine.execute(snapshot=snapshot)
    while status == "failed" and snapshot.status == "error":
        snapshot = await engine.execute(snapshot=snapshot)
    if status == "paused":
        snapshot = await engine.execute(snapshot=snapshot)
    return snapshot


@pytest.mark.parametrize("status", STATUSES)
async def test_our_snapshot_at_the_same_point_matches_typescript_field_by_field(
    status: str,
) -> None:
    ours = await _ours_at(status)
    assert ours.status == status
    _same_but(wire(ours), RECORDED["snapshots"][status], OURS_AT_THE_SAME_POINT[status])


async def test_our_snapshot_resumes_in_typescript_form() -> None:
    """Our paused snapshot, resumed, ends where TypeScript's paused snapshot ends."""
    ours = await _ours_at("paused")
    final = await _engine("paused").execute(
        snapshot=Snapshot.from_json(ours.to_json()), external_payload=_payload("paused")
    )
    _same_but(wire(final), RECORDED["ends"]["paused"], {"version": 7, "metadata": {}})
