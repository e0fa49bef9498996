"""``refluxo status`` shows a run read as stored exactly as the run API's models show it.

The command builds its view from the stored wire JSON (:mod:`refluxo.api.run_json`), not
from :class:`~refluxo.api.models.RunDetailView`; here both read the same runs, in every
state and with every optional field present or absent, and must print the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo.api.api_error import ApiError
from refluxo.api.models import RunDetailView
from refluxo.api.stored_client import StoredClient
from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.reader import SqliteRunReader
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.model import NodeResult, RetryState, Snapshot, SnapshotStatus
from refluxo.runtime.ports import AppendedResult, RunRecord, StepCommit

CREATED_AT = 1_795_000_000_000

RESULTS = [
    ("start", NodeResult({"title": "Hé ✓", "n": 1.5, "big": 2**62, "nested": [[1], {}]}, 10)),
    ("fetch", NodeResult(timestamp=11, error="timeout after 3 s", attempt=1)),
    ("fetch", NodeResult([1, 2.0, None, True], 12, 2)),
    ("review", NodeResult(None, 13)),
]

SNAPSHOTS = {
    "active": Snapshot(workflow_id="w-active", status=SnapshotStatus.ACTIVE, current_node_id="a"),
    "retrying": Snapshot(
        workflow_id="w-retrying",
        status=SnapshotStatus.ERROR,
        current_node_id="fetch",
        version=3,
        last_started_at=CREATED_AT + 5,
        total_execution_time=7,
        retry_state=RetryState("fetch", 2, CREATED_AT + 900),
    ),
    "retry-now": Snapshot(
        workflow_id="w-retry-now",
        status=SnapshotStatus.ERROR,
        current_node_id="fetch",
        version=2,
        retry_state=RetryState("fetch", 1),
    ),
    "paused": Snapshot(
        workflow_id="w-paused",
        status=SnapshotStatus.PAUSED,
        current_node_id="review",
        version=4,
        metadata={"resumeAt": CREATED_AT + 60_000.5, "note": "ünïcode", "list": [1, {"a": None}]},
    ),
    "completed": Snapshot(
        workflow_id="w-completed",
        status=SnapshotStatus.COMPLETED,
        current_node_id=None,
        version=5,
        last_started_at=CREATED_AT + 1,
        total_execution_time=0,
    ),
    "failed": Snapshot(
        workflow_id="w-failed",
        status=SnapshotStatus.FAILED,
        current_node_id="fetch",
        version=6,
        metadata={"failedReason": "Cancelled"},
    ),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    store = SqliteStore(db, clock=lambda: CREATED_AT + 100)
    for run_id, snapshot in SNAPSHOTS.items():
        start = snapshot.model_copy(update={"version": 0})
        store.create_run(RunRecord(run_id, "flow", "v" * 64, start, CREATED_AT, CREATED_AT))
        appended = [
            AppendedResult(seq, node_id, sum(1 for n, _ in RESULTS[:seq] if n == node_id), result)
            for seq, (node_id, result) in enumerate(RESULTS)
        ]
        committed = store.commit(StepCommit(run_id, 0, snapshot, appended))
        assert committed.committed
    yield store
    db.close()


def by_models(store: SqliteStore, run_id: str, after: int, limit: int) -> dict[str, Any]:
    """What ``LocalClient.get`` answers: the response model, dumped by wire names."""
    record = store.load_run(run_id)
    assert record is not None
    timeline = store.timeline(run_id, after_seq=after, limit=limit)
    return RunDetailView.of_run(record, timeline).model_dump(mode="json", by_alias=True)


@pytest.mark.parametrize("run_id", list(SNAPSHOTS))
@pytest.mark.parametrize(("after", "limit"), [(-1, 1000), (0, 2), (3, 100), (-1, 0)])
def test_the_stored_view_prints_as_the_model_view(
    store: SqliteStore, run_id: str, after: int, limit: int
) -> None:
    expected = by_models(store, run_id, after, limit)
    shown = StoredClient(SqliteRunReader(store.db)).get(
        run_id, timeline_after=after, timeline_limit=limit
    )
    assert json.dumps(shown, indent=2) == json.dumps(expected, indent=2)  # order included


def test_a_head_stored_with_its_keys_in_another_order_prints_the_same(
    store: SqliteStore,
) -> None:
    expected = by_models(store, "retrying", -1, 1000)
    head = json.loads(SNAPSHOTS["retrying"].model_dump_json())
    reordered = json.dumps(dict(reversed(list(head.items()))))
    with store.db.write() as connection:
        connection.execute("UPDATE runs SET head = ? WHERE run_id = 'retrying'", (reordered,))
    shown = StoredClient(SqliteRunReader(store.db)).get("retrying", timeline_limit=1000)
    assert json.dumps(shown) == json.dumps(expected)


def test_an_unknown_run_is_the_api_s_404(store: SqliteStore) -> None:
    with pytest.raises(ApiError) as missing:
        StoredClient(SqliteRunReader(store.db)).get("no-such-run")
    assert (missing.value.status, missing.value.code) == (404, "run_not_found")
    assert str(missing.value) == "404 run_not_found: no run 'no-such-run'"
