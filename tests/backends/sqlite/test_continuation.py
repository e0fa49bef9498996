"""The worker that commits a step goes on with the run: no claim query, no reload.

And a step costs one write transaction of five statements (BEGIN, the head, the result,
the delivery bookkeeping, COMMIT) and no read; a step that runs for long is logged and left
to finish, never handed out again (it would run twice at once).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.scheduler import LocalScheduler
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.ports import Delivery
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.sqlite_trace import trace_statements
from tests.support.waiting import wait_until


def test_a_run_is_continued_by_the_worker_that_committed_its_step(
    tmp_path: Path, clock: FakeClock
) -> None:
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=4)
    loads: list[str] = []
    load_run = runtime.store.load_run

    def counted(run_id: str) -> Any:
        loads.append(threading.current_thread().name)
        return load_run(run_id)

    runtime.store.load_run = counted  # type: ignore[method-assign]
    with runtime:
        run_id = runtime.service.start("chain").record.run_id
        wait_until(lambda: runtime.service.get(run_id).status == "completed", 20, "the run")
        assert runtime.scheduler.wait_idle(timeout=20)
    record = load_run(run_id)
    assert record is not None
    assert record.result_count == 5
    assert runtime.scheduler.delivered == 5
    # The first delivery loads the run (and reading it back above does not count): the
    # four that follow are delivered with the record their predecessor's commit returned.
    assert len([name for name in loads if name.startswith("refluxo")]) <= 1, loads


def without_ownership(statements: list[str]) -> list[str]:
    """``statements`` without the transactions and reads of the ``deliverer`` row (the
    right to deliver, taken and given back once per drain)."""
    kept: list[str] = []
    transaction: list[str] = []
    for statement in statements:
        if transaction or statement.startswith("BEGIN"):
            transaction.append(statement)
            if statement.startswith(("COMMIT", "ROLLBACK")):
                if not any("deliverer" in part for part in transaction):
                    kept += transaction
                transaction = []
        elif "deliverer" not in statement:
            kept.append(statement)
    return kept + transaction


def test_a_step_is_one_write_transaction_of_five_statements(
    tmp_path: Path, clock: FakeClock
) -> None:
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=0)
    statements: list[str] = []
    try:
        runtime.service.start("chain")
        trace_statements(runtime.db, statements.append)
        assert runtime.scheduler.drain() == 5
        statements = without_ownership(statements)  # the drain's own, once, not per step
        writes = [s for s in statements if not s.lstrip().upper().startswith("SELECT")]
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    finally:
        runtime.stop()
    # BEGIN, UPDATE runs, INSERT result, deliveries, COMMIT; the last step also changes the
    # run's status, which the first UPDATE leaves alone: one more UPDATE, once per run.
    assert len(writes) == 5 * 5 + 1, writes
    assert sum(1 for s in writes if "SET status" in s) == 1
    # The table read once at the start of the drain, the run and its definition loaded
    # once, and no history count: the first delivery's run has no results yet, and each
    # commit returns its history's counts with the record the next step goes on with.
    assert len(reads) == 3, reads


def test_a_step_reloaded_from_the_table_counts_its_node_s_results(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Counts known in memory are an optimisation: a run loaded again (another process,
    a restart) reads its history's counts from the table, and indexes results the same."""
    path = tmp_path / "runs.db"
    first = EmbeddedRuntime(build_app(clock), path, workers=0)
    try:
        run_id = first.service.start("chain").record.run_id
        assert first.scheduler.drain(limit=2) == 2
    finally:
        first.stop()
    again = EmbeddedRuntime(build_app(clock), path, workers=0)
    try:
        assert again.scheduler.drain() == 3
        record = again.store.load_run(run_id)
        assert record is not None
        assert record.status == "completed"
        history = again.store.history(record)
        rows = (
            again.db.connection()
            .execute(
                "SELECT node_id, node_index FROM results WHERE run_id = ? ORDER BY seq", (run_id,)
            )
            .fetchall()
        )
    finally:
        again.stop()
    assert [node for node, _ in rows] == history.node_ids()
    assert all(index == 0 for _, index in rows)
    assert {node: history.count(node) for node, _ in rows} == {node: 1 for node, _ in rows}


def test_a_long_step_is_logged_and_never_handed_out_again(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    db = SqliteDatabase(tmp_path / "deliveries.db", synchronous="NORMAL")
    release = threading.Event()
    seen: list[str] = []

    def slow(delivery: Delivery) -> None:
        seen.append(delivery.run_id)
        if delivery.run_id == "slow":
            release.wait(20)  # still running long after the slow-step mark

    scheduler = LocalScheduler(db, handler=slow, clock=clock, workers=2, slow_step_s=0.2)
    scheduler.start()
    try:
        with caplog.at_level("WARNING", logger="refluxo.scheduler"):
            scheduler.schedule(Delivery("slow", 0, clock.now))
            wait_until(
                lambda: "the step of run slow v0 has run for over 0.2 s" in caplog.text,
                20,
                "the slow step logged",
            )
            # The free worker takes the soonest due delivery: had the slow one gone back
            # to the queue, it would come before this later one.
            scheduler.schedule(Delivery("later", 0, clock.now + 1))
            clock.advance(1)
            scheduler.wake()
            wait_until(lambda: "later" in seen, 20, "the later delivery delivered")
        assert seen == ["slow", "later"]
        assert caplog.text.count("the step of run slow v0") == 1
        release.set()
        wait_until(lambda: not scheduler.pending(), 20, "the slow delivery acknowledged")
    finally:
        release.set()
        scheduler.stop()
        db.close()
    assert seen == ["slow", "later"]


def test_a_run_reloaded_in_the_same_process_still_reads_no_count(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A delivery that went back to the queue is loaded again, with the node counts its
    predecessor's commit returned (the store remembers them for that head)."""
    runtime = EmbeddedRuntime(build_app(clock), tmp_path / "runs.db", workers=0)
    statements: list[str] = []
    try:
        runtime.service.start("chain")
        trace_statements(runtime.db, statements.append)
        for _ in range(5):  # one delivery at a time: each is claimed and loaded again
            assert runtime.scheduler.drain(limit=1) == 1
    finally:
        runtime.stop()
    loads = [s for s in statements if s.startswith("SELECT run_id, workflow")]
    counts = [s for s in statements if "max(node_index)" in s]
    assert len(loads) == 5
    assert counts == []
