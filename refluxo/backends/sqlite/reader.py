"""Reading the embedded database's runs as stored, to show them.

The rows :class:`~refluxo.backends.sqlite.store.SqliteStore` reads for the run API, handed
out as :mod:`refluxo.runtime.stored` records: the head and the results are decoded by
:mod:`json`, not validated into models. This is what lets ``refluxo status`` show a run
without importing pydantic, the engine or the app that runs it; the store, which steps
runs, keeps decoding into models.
"""

from __future__ import annotations

import json

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.runtime.stored import StoredResult, StoredRun, within_page_bytes


class SqliteRunReader:
    """Reads runs and their timelines from ``db``; never writes."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    def run(self, run_id: str) -> StoredRun | None:
        """The run's head row, or ``None`` if there is no such run."""
        with self.db.reading() as connection:
            row = connection.execute(
                "SELECT run_id, workflow, definition_version, head, created_at, updated_at, "
                "result_count FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        run_id, workflow, version, head, created, updated, count = row
        return StoredRun(run_id, workflow, version, json.loads(head), created, updated, count)

    def timeline(self, run_id: str, *, after_seq: int = -1, limit: int = 100) -> list[StoredResult]:
        """At most ``limit`` results committed after ``after_seq``, in commit order."""
        rows = timeline_rows(self.db, run_id, after_seq, limit)
        return [StoredResult(seq, node_id, json.loads(result)) for seq, node_id, result in rows]


def timeline_rows(
    db: SqliteDatabase, run_id: str, after_seq: int, limit: int
) -> list[tuple[int, str, str]]:
    """A run's result rows after ``after_seq``, in commit order, as many as a timeline page
    holds (:func:`~refluxo.runtime.ports.within_page_bytes`): ``(seq, node id, the
    result's JSON text)``; the store and this reader decode the text each their own way."""
    with db.reading() as connection:
        cursor = connection.execute(
            "SELECT seq, node_id, result FROM results WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        )
        rows: list[tuple[int, str, str]] = list(within_page_bytes(cursor, _text_size))
    return rows


def _text_size(row: tuple[int, str, str]) -> int:
    return len(row[2])
