"""The right to deliver a database's steps, held by one process at a time: what could let
a second deliverer in (a stop that times out, the lock file deleted or replaced, a hard
link, a forked child), and what keeps it out."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.errors import DatabaseInUse, LocalDatabaseError
from refluxo.backends.sqlite.ownership import DeliveryLock
from refluxo.backends.sqlite.scheduler import LocalScheduler
from refluxo.runtime.ports import Delivery
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until


def idle_scheduler(db: SqliteDatabase, clock: FakeClock) -> LocalScheduler:
    """A scheduler of one worker whose deliveries do nothing: what the lock is about is
    who delivers, not what."""
    return LocalScheduler(db, handler=lambda _: None, clock=clock, workers=1)


def refused(db: SqliteDatabase) -> bool:
    other = DeliveryLock(db)
    try:
        other.acquire()
    except DatabaseInUse:
        return True
    other.release()
    return False


def test_a_step_still_running_after_stop_keeps_the_right_to_deliver_until_it_ends(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    release = threading.Event()
    started = threading.Event()

    def long_step(delivery: Delivery) -> None:
        started.set()
        release.wait(20)

    scheduler = LocalScheduler(db, handler=long_step, clock=clock, workers=1)
    scheduler.start()
    try:
        scheduler.schedule(Delivery("long", 0, clock.now))
        assert started.wait(20)
        scheduler.stop(timeout=0.05)  # returns with the step still running
        assert refused(db), "another deliverer could run the step that still runs"
        release.set()
        wait_until(lambda: not refused(db), 20, "the right to deliver given up")
    finally:
        release.set()
        db.close()


def test_a_deleted_lock_file_is_locked_again_by_its_holder(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    scheduler = idle_scheduler(db, clock)
    scheduler.start()
    lock_file = tmp_path / "runs.db.lock"
    try:
        lock_file.unlink()
        scheduler.wake()  # its next rescan checks the file
        wait_until(lock_file.exists, 20, "the lock file made again")
        assert refused(db)
    finally:
        scheduler.stop()
        db.close()


def test_a_newcomer_after_the_lock_file_was_deleted_is_refused_by_the_recorded_holder(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The lock file deleted, a newcomer locks a new one before the holder notices: the
    database still records the holder (alive), so the newcomer is refused all the same,
    and the holder goes on delivering."""
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    delivered: list[str] = []
    scheduler = LocalScheduler(db, handler=lambda d: delivered.append(d.run_id), clock=clock)
    scheduler.start()
    try:
        (tmp_path / "runs.db.lock").unlink()
        with pytest.raises(DatabaseInUse, match="its lock file was deleted or replaced"):
            DeliveryLock(db).acquire()
        scheduler.schedule(Delivery("after", 0, clock.now))
        wait_until(lambda: delivered == ["after"], 20, "the holder delivering on")
    finally:
        scheduler.stop()
        db.close()


def test_a_holder_whose_new_lock_file_another_locks_delivers_nothing_until_it_can(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Something else locks the file now at the path (a process of an older version,
    which records nothing): the holder delivers nothing while it cannot lock that file,
    then goes on."""
    import fcntl

    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    delivered: list[str] = []
    scheduler = LocalScheduler(db, handler=lambda d: delivered.append(d.run_id), clock=clock)
    scheduler.start()
    lock_file = tmp_path / "runs.db.lock"
    try:
        with caplog.at_level("WARNING", logger="refluxo.scheduler"):
            replacement = tmp_path / "replacement"
            with open(replacement, "a+") as other:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                replacement.replace(lock_file)  # locked before it is at the path
                scheduler.wake()
                wait_until(
                    lambda: "this process delivers nothing until it can lock it" in caplog.text,
                    20,
                    "the holder pausing",
                )
                scheduler.schedule(Delivery("waiting", 0, clock.now))
                with pytest.raises(DatabaseInUse):
                    scheduler.drain()
                assert delivered == []
            scheduler.wake()  # the other let go: the holder locks the file again
            wait_until(lambda: delivered == ["waiting"], 20, "the holder delivering again")
            assert "delivering again" in caplog.text
    finally:
        scheduler.stop()
        db.close()


def test_a_scheduler_in_standby_delivers_once_the_holder_stops(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    first: list[str] = []
    second: list[str] = []
    holder = LocalScheduler(db, handler=lambda d: first.append(d.run_id), clock=clock)
    standby = LocalScheduler(db, handler=lambda d: second.append(d.run_id), clock=clock)
    holder.start()
    try:
        standby.start(standby=True)
        holder.schedule(Delivery("one", 0, clock.now))
        wait_until(lambda: first == ["one"], 20, "the holder delivering")
        holder.stop()
        standby.schedule(Delivery("two", 0, clock.now))
        standby.wake()
        wait_until(lambda: second == ["two"], 20, "the standby delivering")
        assert first == ["one"]
    finally:
        holder.stop()
        standby.stop()
        db.close()


def test_a_database_with_two_names_is_not_delivered(tmp_path: Path, clock: FakeClock) -> None:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    os.link(tmp_path / "runs.db", tmp_path / "alias.db")
    scheduler = idle_scheduler(db, clock)
    try:
        with pytest.raises(LocalDatabaseError, match="has 2 names \\(hard links\\)"):
            scheduler.start()
    finally:
        scheduler.stop()
        db.close()


def test_a_forked_child_does_not_inherit_the_right_to_deliver(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    scheduler = idle_scheduler(db, clock)
    scheduler.start()
    try:
        pid = os.fork()
        if pid == 0:  # the child: a step that forked, calling into the runtime it copied
            try:
                scheduler.drain()
            except DatabaseInUse:
                os._exit(7)
            except BaseException:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 7
        assert refused(db)  # the child's exit left the parent's lock alone
    finally:
        scheduler.stop()
        db.close()


def test_a_lock_file_replaced_by_a_symbolic_link_is_never_written_through(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The lock file replaced by a link to the database: the holder's line would have
    overwritten the database itself (it did, down to 51 bytes)."""
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    delivered: list[str] = []
    scheduler = LocalScheduler(db, handler=lambda d: delivered.append(d.run_id), clock=clock)
    scheduler.start()
    lock_file = tmp_path / "runs.db.lock"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    try:
        link = tmp_path / "link"
        link.symlink_to(tmp_path / "runs.db")
        link.replace(lock_file)
        before = (tmp_path / "runs.db").read_bytes()
        with pytest.raises(LocalDatabaseError, match="it is a symbolic link"):
            DeliveryLock(db).acquire()
        scheduler.wake()  # its rescan finds the link and leaves it alone
        scheduler.schedule(Delivery("after", 0, clock.now))
        wait_until(lambda: delivered == ["after"], 20, "the holder delivering on")
        assert (tmp_path / "runs.db").read_bytes()[:16] == before[:16] == b"SQLite format 3\0"
        lock_file.unlink()
        lock_file.symlink_to(victim)
        scheduler.wake()
        scheduler.schedule(Delivery("later", 0, clock.now))
        wait_until(lambda: delivered == ["after", "later"], 20, "delivering after a rescan")
        assert victim.read_text() == "keep me"
    finally:
        scheduler.stop()
        db.close()


@pytest.mark.parametrize("target", ["victim.txt", "runs.db-wal", "other.db"])
def test_a_lock_path_that_is_another_name_of_a_file_is_never_written(
    tmp_path: Path, clock: FakeClock, target: str
) -> None:
    """A hard link at the lock path is that file: the holder's line would have replaced
    another file, the database's own WAL (corrupting it), or another database."""
    db = SqliteDatabase(tmp_path / "runs.db", synchronous="OFF")
    scheduler = idle_scheduler(db, clock)
    try:
        scheduler.schedule(Delivery("written", 0, clock.now))  # a commit: the WAL has it
        victim = tmp_path / target
        if not victim.exists():
            victim.write_bytes(b"IMPORTANT DATA")
        before = victim.read_bytes()
        os.link(victim, tmp_path / "runs.db.lock")
        with pytest.raises(LocalDatabaseError, match="is not its lock file"):
            scheduler.start()
        assert victim.read_bytes() == before
    finally:
        scheduler.stop()
        db.close()


def test_a_file_of_another_program_at_the_lock_path_is_left_alone(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = SqliteDatabase(tmp_path / "yarn", synchronous="OFF")
    (tmp_path / "yarn.lock").write_text("# yarn lockfile v1\n")
    scheduler = idle_scheduler(db, clock)
    try:
        with pytest.raises(LocalDatabaseError, match="move it away"):
            scheduler.start()
    finally:
        scheduler.stop()
        db.close()
    assert (tmp_path / "yarn.lock").read_text() == "# yarn lockfile v1\n"
