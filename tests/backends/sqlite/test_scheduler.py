"""The local scheduler's workers: they purge, they survive, they neither spin nor collide.

Each test runs real worker threads over a real database, on a clock the test moves.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.scheduler import DONE_RETENTION_MS, LocalScheduler
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.ports import Delivery
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

HOUR_MS = 3_600_000


class Recorder:
    """A handler that records what it is given, and fails the runs it is told to."""

    def __init__(self, fail: Callable[[Delivery], bool] = lambda _: False) -> None:
        self.fail = fail
        self.lock = threading.Lock()
        self.seen: list[str] = []

    def __call__(self, delivery: Delivery) -> None:
        with self.lock:
            self.seen.append(delivery.name)
        if self.fail(delivery):
            raise RuntimeError(f"run {delivery.run_id} fails")

    def count(self) -> int:
        with self.lock:
            return len(self.seen)


class SwitchableDatabase(SqliteDatabase):
    """A database whose writes fail while ``full``, as on a full disk."""

    full = False

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        if self.full:
            raise TransientError("SQLite SQLITE_FULL: database or disk is full")
        with super().write() as connection:
            yield connection


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SwitchableDatabase]:
    db = SwitchableDatabase(tmp_path / "deliveries.db", synchronous="NORMAL")
    yield db
    db.close()


@contextmanager
def running(scheduler: LocalScheduler) -> Iterator[LocalScheduler]:
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop()


def done_names(db: SqliteDatabase) -> set[str]:
    """The deliveries the table still remembers as delivered (read from the side)."""
    rows = db.connection().execute("SELECT name FROM deliveries WHERE state = 'done'")
    return {name for (name,) in rows.fetchall()}


def counts(db: SqliteDatabase) -> dict[str, int]:
    """How many deliveries are pending and how many done (read from the side)."""
    rows = db.connection().execute("SELECT state, count(*) FROM deliveries GROUP BY state")
    return {"pending": 0, "done": 0, **dict(rows.fetchall())}


def test_workers_forget_old_deliveries_and_never_pending_ones(
    db: SwitchableDatabase, clock: FakeClock
) -> None:
    stuck = Delivery("stuck", 0, clock.now)
    handler = Recorder(fail=lambda delivery: delivery.run_id == "stuck")
    scheduler = LocalScheduler(db, handler=handler, clock=clock, workers=2)
    later = Delivery("later", 0, clock.now + 10 * HOUR_MS)
    with running(scheduler):
        for index in range(50):
            scheduler.schedule(Delivery(f"run-{index}", 0, clock.now))
        scheduler.schedule(stuck)
        scheduler.schedule(later)
        wait_until(lambda: counts(db)["done"] == 50, 20, "the first deliveries")
        old = done_names(db)

        clock.advance(2 * HOUR_MS)  # past the retention, and the activity goes on
        fresh = [Delivery(f"fresh-{index}", 0, clock.now) for index in range(5)]
        for delivery in fresh:
            scheduler.schedule(delivery)
        wait_until(lambda: not old & done_names(db), 20, "the old deliveries to be purged")
        wait_until(lambda: counts(db)["done"] == 5, 20, "the fresh deliveries")

    assert done_names(db) == {delivery.name for delivery in fresh}
    assert {d.name for d in scheduler.pending()} == {stuck.name, later.name}
    assert handler.seen.count(stuck.name) >= 2  # retried, and still remembered as pending


def test_the_workers_purge_at_most_once_per_interval(
    db: SwitchableDatabase, clock: FakeClock
) -> None:
    scheduler = LocalScheduler(
        db, handler=Recorder(), clock=clock, workers=2, retention_ms=1_000, purge_every_ms=60_000
    )
    with running(scheduler):
        scheduler.schedule(Delivery("first", 0, clock.now))
        wait_until(lambda: counts(db)["done"] == 1, 20, "the first delivery")

        clock.advance(2_000)  # expired, but the last purge was 2 s ago (at start)
        scheduler.schedule(Delivery("second", 0, clock.now))
        wait_until(lambda: counts(db)["done"] == 2, 20, "the second delivery")
        # A worker checked before claiming the second delivery: too soon to purge again.
        assert counts(db)["done"] == 2

        clock.advance(60_000)
        scheduler.schedule(Delivery("third", 0, clock.now))
        wait_until(lambda: counts(db) == {"pending": 0, "done": 1}, 20, "a purge")


def test_the_embedded_runtime_purges_with_the_default_retention(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = build_app(clock)
    with EmbeddedRuntime(app, tmp_path / "runs.db", workers=2, synchronous="NORMAL") as runtime:
        first = runtime.service.start("chain").record.run_id
        wait_until(lambda: runtime.service.get(first).status == "completed", 20, "a run")
        old = done_names(runtime.db)
        assert old

        clock.advance(DONE_RETENTION_MS + 60_000)
        second = runtime.service.start("chain").record.run_id
        wait_until(lambda: runtime.service.get(second).status == "completed", 20, "a run")
        wait_until(lambda: not old & done_names(runtime.db), 20, "the old deliveries purged")
        assert done_names(runtime.db)  # the second run's are kept


def test_workers_outlive_a_database_that_cannot_write_and_resume_by_themselves(
    db: SwitchableDatabase, clock: FakeClock
) -> None:
    handler = Recorder()
    scheduler = LocalScheduler(db, handler=handler, clock=clock, workers=2)
    with running(scheduler):
        for index in range(3):
            scheduler.schedule(Delivery(f"run-{index}", 0, clock.now + 1_000))
        db.full = True  # the handler succeeds, then neither the ack nor a retry can be written
        clock.advance(1_000)
        scheduler.wake()
        wait_until(lambda: handler.count() >= 9, 20, "each delivery to be tried again")
        assert {d.run_id for d in scheduler.pending()} == {"run-0", "run-1", "run-2"}

        db.full = False
        wait_until(lambda: not scheduler.pending(), 20, "the deliveries to be acknowledged")
        scheduler.schedule(Delivery("after", 0, clock.now))
        wait_until(lambda: counts(db) == {"pending": 0, "done": 4}, 20, "a new one")


def test_a_failed_delivery_is_logged_by_where_it_failed_never_by_its_text(
    db: SwitchableDatabase, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tok_" + "SECRET_42"  # a runtime value: frames show the code, not values

    def handler(delivery: Delivery) -> None:
        raise RuntimeError(f"a text that quotes {secret}")

    scheduler = LocalScheduler(db, handler=handler, clock=clock, workers=0)
    scheduler.schedule(Delivery("quoted", 0, clock.now))
    scheduler.drain()
    assert "delivery of run quoted v0 failed: RuntimeError (message withheld)" in caplog.text
    assert "tok_SECRET_42" not in caplog.text


def tried_at_least(calls: Recorder, count: int) -> bool:
    return calls.count() >= count


@pytest.mark.parametrize(
    "raised", [asyncio.CancelledError, SystemExit, GeneratorExit, KeyboardInterrupt]
)
def test_workers_outlive_a_handler_that_raises_what_is_not_an_exception(
    db: SwitchableDatabase, clock: FakeClock, raised: type[BaseException]
) -> None:
    calls = Recorder()

    def handler(delivery: Delivery) -> None:
        calls(delivery)
        if calls.count() <= 3:  # more than there are workers
            raise raised()

    scheduler = LocalScheduler(db, handler=handler, clock=clock, workers=2)
    with running(scheduler):
        scheduler.schedule(Delivery("first", 0, clock.now))
        for tried in range(1, 4):  # each failure is retried later, as any failure is
            wait_until(functools.partial(tried_at_least, calls, tried), 20, f"try {tried}")
            clock.advance(HOUR_MS)
            scheduler.wake()
        wait_until(lambda: calls.count() >= 4, 20, "the delivery to be tried a fourth time")
        scheduler.schedule(Delivery("second", 0, clock.now))
        wait_until(lambda: counts(db) == {"pending": 0, "done": 2}, 20, "both delivered")


def test_an_idle_worker_waits_while_another_holds_the_only_due_delivery(
    db: SwitchableDatabase, clock: FakeClock
) -> None:
    """One delivery, in flight for 0.3 s: the other worker must not poll meanwhile."""
    window: dict[str, float] = {}
    slow_step = threading.Event()
    finished = threading.Event()

    def slow(delivery: Delivery) -> None:
        window["start"] = time.process_time()
        slow_step.wait(0.3)  # the step's own work, which nothing sets
        window["end"] = time.process_time()
        finished.set()

    scheduler = LocalScheduler(db, handler=slow, clock=clock, workers=2)
    with running(scheduler):
        scheduler.schedule(Delivery("slow", 0, clock.now))
        assert finished.wait(20)  # the test thread does nothing meanwhile either
    # Polling for a delivery in flight kept a core busy for the whole window.
    cpu = window["end"] - window["start"]
    assert cpu < 0.05, f"{cpu:.3f} s of CPU while the only due delivery was in flight"


def test_no_delivery_is_handed_to_two_workers_at_once(
    db: SwitchableDatabase, clock: FakeClock
) -> None:
    handler = Recorder()
    scheduler = LocalScheduler(db, handler=handler, clock=clock, workers=4)
    names: list[Any] = []
    with running(scheduler):
        with db.write() as connection:  # all at once, so that every worker has work
            for index in range(400):
                delivery = Delivery(f"run-{index}", 0, clock.now)
                names.append(delivery.name)
                connection.execute(
                    "INSERT INTO deliveries (name, run_id, version, due_at, hop, available_at, "
                    "state, attempts, updated_at) VALUES (?, ?, 0, ?, 0, ?, 'pending', 0, ?)",
                    (delivery.name, delivery.run_id, clock.now, clock.now, clock.now),
                )
        scheduler.wake()
        wait_until(lambda: counts(db)["done"] == 400, 30, "every delivery")
    assert sorted(handler.seen) == sorted(names)
