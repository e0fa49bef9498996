"""The database's connections: pooled, bounded, closed, and failing as the ports require.

A connection per thread was never closed: every short-lived thread (a request of the local
HTTP server) left two descriptors and a page cache behind. Connections now come from a
bounded pool, whatever the number of threads, and ``close`` closes them all.

SQLite failures that may pass reach callers as :class:`~refluxo.errors.TransientError`
(so a delivery is retried and the API answers 503); the rest keep their type.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.errors import TransientError
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.ports import Delivery
from tests.support.apps import build_app
from tests.support.clock import FakeClock

THREADS = 2_000


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def app(clock: FakeClock) -> App:
    return build_app(clock)


@pytest.fixture
def runtime(app: App, tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    runtime = EmbeddedRuntime(app, tmp_path / "runs.db", workers=0, synchronous="NORMAL")
    yield runtime
    runtime.stop()


def test_thousands_of_short_lived_threads_share_a_bounded_pool(runtime: EmbeddedRuntime) -> None:
    run_id = runtime.service.start("chain", {"n": 1}).record.run_id
    runtime.scheduler.drain()
    before = open_descriptors()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            record = runtime.service.get(run_id)
            assert runtime.service.timeline(run_id, limit=2)
            assert runtime.store.history(record).count("n0") == 1
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    for start in range(0, THREADS, 100):
        threads = [threading.Thread(target=read) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[0]
        assert runtime.db.open_connections <= runtime.db.pool_size, start
    pooled = runtime.db.open_connections
    assert open_descriptors() <= before + 2 * pooled

    runtime.db.close()
    assert runtime.db.open_connections == 0
    assert open_descriptors() <= before


def test_a_caller_waits_for_a_free_connection_rather_than_opening_more(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "small.db", pool_size=2, synchronous="NORMAL")
    try:
        inside = threading.Barrier(2)
        release = threading.Event()
        served: list[int] = []

        def hold() -> None:
            with db.reading() as connection:
                connection.execute("SELECT 1").fetchone()
                inside.wait(10)
                release.wait(10)

        def late() -> None:
            with db.reading() as connection:
                served.append(connection.execute("SELECT 2").fetchone()[0])

        holder = threading.Thread(target=hold)
        holder.start()
        with db.reading():
            inside.wait(10)  # both connections are checked out now
            waiter = threading.Thread(target=late)
            waiter.start()
            assert db.open_connections == 2
        waiter.join(10)  # served by the connection this block gave back
        assert served == [2]
        release.set()
        holder.join(10)
        assert db.open_connections == 2
    finally:
        db.close()


def test_a_locked_database_is_a_transient_failure_for_store_history_and_scheduler(
    app: App, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    runtime = EmbeddedRuntime(app, path, workers=0, synchronous="NORMAL")
    runtime.db.timeout = 0.2  # fail fast instead of waiting out the default busy timeout
    try:
        run_id = runtime.service.start("chain").record.run_id
        record = runtime.service.get(run_id)
        # Another process takes the whole file: our WAL connections must let go of it first
        # (the pool stays usable; those opened from now on wait 0.2 s for a lock).
        runtime.db.close()
        blocker = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        blocker.execute("PRAGMA locking_mode=EXCLUSIVE")
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(TransientError, match="SQLITE_BUSY"):
                runtime.service.start("chain")
            with pytest.raises(TransientError):
                runtime.scheduler.schedule(Delivery(run_id, 5, 0))
            # Reads need a shared lock: they fail the same way (and the history reader's).
            for read in (
                lambda: runtime.service.get(run_id),
                lambda: runtime.store.history(record).all("n0"),
                lambda: runtime.scheduler.pending(),
                lambda: runtime.store.list_runs(),
            ):
                with pytest.raises(TransientError):
                    read()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert runtime.service.get(run_id).status == "active"
        assert runtime.scheduler.drain() >= 1  # the pool's connections still work
    finally:
        runtime.stop()


def test_programming_errors_and_constraints_keep_their_type(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "plain.db", synchronous="NORMAL")
    try:
        with (
            pytest.raises(sqlite3.OperationalError, match="no such table"),
            db.reading() as connection,
        ):
            connection.execute("SELECT * FROM nowhere")
        with db.write() as connection:
            connection.execute(
                "INSERT INTO definitions (version, workflow, body, created_at) "
                "VALUES ('v', 'w', '{}', 0)"
            )
        with pytest.raises(sqlite3.IntegrityError), db.write() as connection:
            connection.execute(
                "INSERT INTO definitions (version, workflow, body, created_at) "
                "VALUES ('v', 'w', '{}', 0)"
            )
        with db.reading() as connection:  # rolled back, and the connection reusable
            assert connection.execute("SELECT count(*) FROM definitions").fetchone() == (1,)
    finally:
        db.close()
