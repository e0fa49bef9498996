"""Group commit: writes submitted while the database is busy share one transaction.

Starts (``create_run``) join the same groups as steps' commits, so a burst of ``POST
/runs`` does not cost one fsync each; and a write that cannot be stored fails alone, not
the writes grouped with it.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.scheduler import LocalScheduler
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.runtime.ports import CommitResult, RunRecord
from tests.support.sqlite_trace import trace_statements
from tests.support.stores import new_record, step
from tests.support.waiting import wait_until


class Traced:
    """A store on its own file whose write transactions are counted."""

    def __init__(self, path: Path) -> None:
        self.begins = 0
        self.db = SqliteDatabase(path, synchronous="OFF", timeout=20)
        self.scheduler = LocalScheduler(self.db)
        self.store = SqliteStore(self.db, outbox=self.scheduler.outbox)
        trace_statements(self.db, self._seen)

    def _seen(self, statement: str) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            self.begins += 1


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    made = Traced(tmp_path / "runs.db")
    yield made
    made.db.close()


def in_threads(*calls: Callable[[], CommitResult]) -> tuple[list[threading.Thread], list[Any]]:
    outcomes: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], CommitResult]) -> None:
        outcomes[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_starts_and_commits_submitted_meanwhile_share_one_transaction(traced: Traced) -> None:
    store = traced.store
    store.create_run(new_record("r0"))
    first = store.load_run("r0")
    assert first is not None
    blocker = sqlite3.connect(traced.db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writes: every writer here waits
    before = traced.begins
    head, head_outcome = in_threads(lambda: store.commit(step(store, first, [("a", 1)])))
    wait_until(lambda: traced.begins == before + 1, 10, "the first write to wait for the lock")
    rest, outcomes = in_threads(
        lambda: store.create_run(new_record("r1")),
        lambda: store.create_run(new_record("r2")),
        lambda: store.create_run(new_record("r0")),  # exists: refused, with the stored run
    )
    wait_until(lambda: len(store._queue) == 3, 10, "the three writes to queue")
    blocker.execute("COMMIT")
    blocker.close()
    for thread in head + rest:
        thread.join(10)
    assert head_outcome[0].committed
    assert [outcome.committed for outcome in outcomes] == [True, True, False]
    assert outcomes[2].record.version == 1  # the stored run, as the first write left it
    # The first write's transaction, then one for the three queued behind it.
    assert traced.begins == before + 2
    assert all(store.load_run(run_id) is not None for run_id in ("r1", "r2"))


@pytest.mark.parametrize(
    "unstorable",
    [
        # Out of SQLite's integer range.
        dataclasses.replace(new_record("huge"), created_at=2**70, updated_at=2**70),
        # An input that is not JSON (json.dumps raises TypeError).
        dataclasses.replace(new_record("huge"), input={"s": {1, 2}}),
    ],
    ids=["out-of-range", "not-json"],
)
def test_a_start_that_cannot_be_stored_fails_alone_in_its_group(
    traced: Traced, unstorable: RunRecord
) -> None:
    store = traced.store
    blocker = sqlite3.connect(traced.db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    before = traced.begins
    head, _ = in_threads(lambda: store.create_run(new_record("first")))
    wait_until(lambda: traced.begins == before + 1, 10, "the first write to wait for the lock")
    errors: list[BaseException] = []

    def start_unstorable() -> CommitResult:
        try:
            return store.create_run(unstorable)
        except (OverflowError, TypeError) as err:
            errors.append(err)
            return CommitResult(committed=False)

    rest, outcomes = in_threads(start_unstorable, lambda: store.create_run(new_record("fine")))
    wait_until(lambda: len(store._queue) == 2, 10, "the two writes to queue")
    blocker.execute("COMMIT")
    blocker.close()
    for thread in head + rest:
        thread.join(10)
    assert len(errors) == 1
    assert outcomes[1].committed
    assert traced.begins == before + 2  # the two queued writes were one transaction
    assert store.load_run("huge") is None
    assert store.load_run("fine") is not None
    assert store.load_run("first") is not None
