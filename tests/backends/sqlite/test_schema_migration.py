"""A database written before ``runs.due_at`` existed keeps working: opening it adds the
column, fills it in from each run's head, and indexes it for the reconciler. One written
before ``child_ends.descendants`` gains that column, its recorded ends counting 0."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from refluxo.backends.sqlite.db import SCHEMA, SqliteDatabase
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.model import RetryState, Snapshot, SnapshotStatus
from refluxo.runtime.ports import ChildEnd
from refluxo.runtime.records import encode_head
from tests.support.clock import FakeClock
from tests.support.stores import new_record

OLD_RUNS = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    definition_version TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    head TEXT NOT NULL,
    input TEXT,
    pending TEXT,
    result_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"""
"""The ``runs`` table as the first releases created it (no ``due_at``)."""


def head(run_id: str, status: SnapshotStatus, **fields: object) -> Snapshot:
    return Snapshot(workflow_id=run_id, status=status, current_node_id="a", version=3, **fields)


HEADS = {
    "active": (head("active", SnapshotStatus.ACTIVE), 5_000, 5_000),
    "retrying": (
        head("retrying", SnapshotStatus.ERROR, retry_state=RetryState("a", 1, 70_000)),
        6_000,
        70_000,
    ),
    "sleeping": (
        head("sleeping", SnapshotStatus.PAUSED, metadata={"resumeAt": 90_000}),
        7_000,
        90_000,
    ),
    "waiting": (head("waiting", SnapshotStatus.PAUSED), 8_000, None),
    "done": (head("done", SnapshotStatus.COMPLETED), 9_000, None),
}
"""Run id: its head, its ``updated_at``, and the expected time the migration must find."""


def old_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    # Everything else as it is today, the runs table as it was.
    connection.executescript(OLD_RUNS + SCHEMA)
    for run_id, (snapshot, updated_at, _) in HEADS.items():
        connection.execute(
            "INSERT INTO runs VALUES (?, 'wf', 'v1', ?, 3, ?, 'null', NULL, 0, 1000, ?)",
            (run_id, snapshot.status.value, encode_head(snapshot), updated_at),
        )
    connection.commit()
    connection.close()


def columns(db: SqliteDatabase) -> list[str]:
    return [row[1] for row in db.connection().execute("PRAGMA table_info(runs)")]


def test_an_old_database_gains_the_expected_times_of_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    db = SqliteDatabase(path, synchronous="OFF")
    try:
        assert "due_at" in columns(db)
        found = dict(db.connection().execute("SELECT run_id, due_at FROM runs").fetchall())
        assert found == {run_id: due for run_id, (_, _, due) in HEADS.items()}
        indexes = [row[1] for row in db.connection().execute("PRAGMA index_list(runs)")]
        assert "runs_by_due_time" in indexes

        store = SqliteStore(db, clock=FakeClock(100_000))
        page = store.overdue_runs(100_000)
        assert [run.run_id for run in page.runs] == ["active", "retrying", "sleeping"]
        assert [run.run_id for run in store.overdue_runs(69_999).runs] == ["active"]
        # And the store goes on writing it.
        store.create_run(new_record("new", created_at=100_000))
        assert [run.run_id for run in store.overdue_runs(100_000).runs][-1] == "new"
    finally:
        db.close()


def test_opening_a_current_database_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "current.db"
    db = SqliteDatabase(path, synchronous="OFF")
    store = SqliteStore(db, clock=FakeClock(1_000))
    store.create_run(new_record("r1", created_at=1_000))
    db.close()
    again = SqliteDatabase(path, synchronous="OFF")
    try:
        assert columns(again).count("due_at") == 1
        rows = again.connection().execute("SELECT run_id, due_at FROM runs").fetchall()
        assert rows == [("r1", 1_000)]
    finally:
        again.close()


def test_the_reconcilers_query_is_one_index_range(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "plan.db", synchronous="OFF")
    try:
        for query in (
            "SELECT * FROM runs WHERE due_at <= ? ORDER BY due_at, run_id LIMIT 10",
            "SELECT * FROM runs WHERE due_at <= ? AND (due_at, run_id) > (?, ?) "
            "ORDER BY due_at, run_id LIMIT 10",
        ):
            plan = " ".join(
                str(row[3])
                for row in db.connection().execute(
                    f"EXPLAIN QUERY PLAN {query}", (1,) * query.count("?")
                )
            )
            assert "runs_by_due_time" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    finally:
        db.close()


OLD_CHILD_ENDS = """
CREATE TABLE child_ends (
    parent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    PRIMARY KEY (parent_id, version, idx)
) WITHOUT ROWID;
"""
"""The ``child_ends`` table before ``descendants``."""


def test_an_old_database_gains_the_descendants_of_its_childrens_ends(tmp_path: Path) -> None:
    path = tmp_path / "old-ends.db"
    connection = sqlite3.connect(path)
    connection.executescript(OLD_CHILD_ENDS + SCHEMA)
    connection.execute(
        "INSERT INTO child_ends VALUES ('p', 2, 0, 'p.2.0', 'completed', '{\"a\":1}', NULL)"
    )
    connection.commit()
    connection.close()
    db = SqliteDatabase(path, synchronous="OFF")
    try:
        store = SqliteStore(db, clock=FakeClock(1_000))
        store.record_child_end("p", 2, ChildEnd(1, "p.2.1", "failed", error="x", descendants=7))
        ends = store.child_ends("p", 2)
        assert [(end.index, end.output, end.descendants) for end in ends] == [
            (0, {"a": 1}, 0),
            (1, None, 7),
        ]
    finally:
        db.close()
