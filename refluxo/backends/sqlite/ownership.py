"""One process at a time delivers a database's steps: :class:`DeliveryLock`.

The local scheduler keeps the deliveries it has handed out in memory: a second process on
the same database cannot see them, and would run the same steps at the same time (a
``refluxo run`` in one terminal while ``refluxo serve`` runs in another). Commits stay
exactly once either way (optimistic locking), but a node's side effects would not. So the
process that delivers holds an exclusive lock on a file beside the database, and another
one is refused with a message naming the holder. The kernel releases the lock when its
process ends, however it ends (``kill -9`` included): no stale lock to clean up.

What could let a second process in, and what stops it:

* the database reached by another path (relative, through a symbolic link): the lock file
  sits beside the database's real file;
* another name of the same file (a hard link): refused outright, since the lock file could
  not be found from the other name (and SQLite itself keeps a journal per name, which two
  names of one file corrupt);
* the lock file deleted or replaced while held: the holder also records itself in the
  database (the ``deliverer`` row: its pid, its start time, the lock file it holds), and a
  newcomer whose lock file is not the one recorded, while the recorded process lives, is
  refused all the same. The holder checks its lock file at every rescan of the scheduler
  (:meth:`DeliveryLock.still_held`) and locks the new one; until it can, it delivers
  nothing. A newcomer also checks that the file it locked is still the one at the path;
* a child process forked by a step: it does not inherit the right to deliver (its copy of
  the lock is dropped at the fork, leaving the parent's lock as it is).

Processes that only read the database, or write to it without delivering (a run started or
resumed with no workers), need no lock: the delivering process picks up what they record.

The standard library does this in a few lines (``fcntl.flock``; ``msvcrt.locking`` on
Windows), so no locking library is added for it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import weakref
from pathlib import Path
from typing import IO

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.errors import DatabaseInUse, LocalDatabaseError

__all__ = ["LOCK_SUFFIX", "DatabaseInUse", "DeliveryLock"]

logger = logging.getLogger("refluxo.scheduler")

LOCK_SUFFIX = ".lock"
"""The lock file's name: the database's, with this added (``refluxo.db.lock``)."""

_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""Open flags that refuse a symbolic link (where the system has them)."""

_ATTEMPTS = 5
"""Times a newcomer locks the file at the path again when it was replaced meanwhile."""

_held: weakref.WeakSet[DeliveryLock] = weakref.WeakSet()
"""The locks this process holds (dropped in a forked child)."""


class DeliveryLock:
    """The right to deliver the steps of the database at ``database``: :meth:`acquire`
    takes it or raises :class:`DatabaseInUse`; :meth:`release` gives it back."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        database = self.database = db.path
        # Beside the file itself: a database reached through a symbolic link (or by a
        # relative path from elsewhere) has the same lock.
        real = database.resolve()
        self.path = real.with_name(real.name + LOCK_SUFFIX)
        self._file: IO[str] | None = None
        self._closer: weakref.finalize[[], DeliveryLock] | None = None
        self._where = ""

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the right to deliver, or raise :class:`DatabaseInUse` naming who has it."""
        if self._file is not None:
            return
        self._refuse_other_names()
        for _ in range(_ATTEMPTS):
            file = self._open()
            try:
                _lock(file)
            except OSError:
                holder = _holder(file)
                file.close()
                raise self._in_use(holder) from None
            if _same_file(file, self.path):
                other = self._recorded_holder(file)
                if other is not None:
                    file.close()
                    raise self._in_use(f"{other}; its lock file was deleted or replaced")
                self._hold(file)
                self._describe()
                return
            file.close()  # deleted or replaced between its opening and its lock: again
        raise DatabaseInUse(f"the lock file {self.path} keeps being replaced: not delivering")

    def _in_use(self, holder: str) -> DatabaseInUse:
        return DatabaseInUse(
            f"another process is delivering the steps of {self.database} ({holder}): two "
            "processes would run the same steps at once. Send the command to it with --url, "
            "or stop it first (a library: one runtime per database)."
        )

    def still_held(self) -> bool:
        """Whether the lock file at the path is still the one held. Deleted or replaced
        (by hand, by a cleaning script), it is locked again; False if another process took
        the new file first: this process must stop delivering."""
        file = self._file
        if file is None:
            return False
        if _same_file(file, self.path):
            return True
        try:
            replacement = self._open()
        except LocalDatabaseError:
            return True  # cannot open it now: still the only holder of the old one
        try:
            _lock(replacement)
        except OSError:
            replacement.close()
            return False
        if not _same_file(replacement, self.path):
            replacement.close()
            return True  # replaced again meanwhile: checked at the next rescan
        self._hold(replacement)
        self._describe()  # records the new file as the one held, before the old one goes
        file.close()
        return True

    def describe(self, where: str) -> None:
        """Say, in the lock file, how to reach the holder (e.g. ``serve on
        http://127.0.0.1:8080``): a refused process reports it."""
        self._where = where[:200]
        self._describe()

    def release(self) -> None:
        if self._file is not None:
            self._unrecord(self._file)
        _held.discard(self)
        self._let_go()  # closing the file releases its lock

    def _hold(self, file: IO[str]) -> None:
        if self._closer is not None:
            self._closer.detach()
        self._file = file
        _held.add(self)
        # A runtime dropped without being stopped: its lock ends with it, quietly.
        self._closer = weakref.finalize(self, file.close)

    def _describe(self) -> None:
        """Say who holds the lock: in the lock file, and in the database's ``deliverer``
        row (with the lock file held), which outlives a deleted lock file."""
        file = self._file
        if file is None:
            return
        holder = f"pid {os.getpid()}: {' '.join(filter(None, [_program(), self._where]))}"
        file.seek(0)
        file.truncate()
        file.write(f"{holder}\n")
        file.flush()
        with self.db.write() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO deliverer (id, pid, started, lock_file, holder) "
                "VALUES (1, ?, ?, ?, ?)",
                (os.getpid(), _started(os.getpid()), _identity(file), holder),
            )

    def _recorded_holder(self, file: IO[str]) -> str | None:
        """Who the database says delivers its steps, if that is another lock file's holder
        still alive (its lock file was deleted or replaced); else None."""
        with self.db.reading() as connection:
            row = connection.execute(
                "SELECT pid, started, lock_file, holder FROM deliverer WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        pid, started, lock_file, holder = row
        if lock_file == _identity(file):
            return None  # it held this very file, which is ours now: it let go
        alive = pid == os.getpid() or _alive(pid, started)
        return str(holder) if alive else None

    def _unrecord(self, file: IO[str]) -> None:
        try:
            with self.db.write() as connection:
                connection.execute(
                    "DELETE FROM deliverer WHERE id = 1 AND pid = ? AND lock_file = ?",
                    (os.getpid(), _identity(file)),
                )
        except Exception:  # a row left behind names a process that ended: harmless
            logger.warning("could not clear the deliverer row of %s", self.database)

    def _open(self) -> IO[str]:
        """The lock file, created if missing: never through a symbolic link (what it points
        to, the database itself perhaps, would be overwritten by the holder's line), and
        only a regular file that is not the database."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o644)
        except OSError as err:
            reason = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror
            raise LocalDatabaseError(
                f"cannot deliver the steps of {self.database}: its lock file {self.path} "
                f"cannot be opened ({reason or err})"
            ) from None
        opened = os.fstat(fd)
        file = os.fdopen(fd, "r+", encoding="utf-8", errors="replace")
        # Only a file of its own: one name (a hard link's other name is another file: the
        # database, its WAL, anything), regular, and empty or written by refluxo.
        if (
            not stat.S_ISREG(opened.st_mode)
            or opened.st_nlink != 1
            or (opened.st_size and not file.read(4).startswith("pid "))
        ):
            file.close()
            raise LocalDatabaseError(
                f"cannot deliver the steps of {self.database}: {self.path} is not its lock "
                "file (another file, or another name of one): move it away"
            )
        return file

    def _refuse_other_names(self) -> None:
        try:
            links = os.stat(self.database).st_nlink
        except OSError:
            return  # not created yet: SQLite creates it with one name
        if links > 1:
            raise LocalDatabaseError(
                f"{self.database} has {links} names (hard links): a process using another "
                "name would not see this one's lock (and SQLite keeps a journal per name, "
                "which corrupts such a database). Keep one name, or copy the file."
            )

    def _forget_in_child(self) -> None:
        """In a forked child: drop this copy of the lock without unlocking the parent's
        (closing a copy of the descriptor leaves the lock to the parent's)."""
        self._let_go()

    def _let_go(self) -> None:
        """Close the file held (if any), and its finalizer with it."""
        file, self._file = self._file, None
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        if file is not None:
            file.close()


def _identity(file: IO[str]) -> str:
    """The file's device and inode: what names it on this machine."""
    held = os.fstat(file.fileno())
    return f"{held.st_dev}:{held.st_ino}"


def _same_file(file: IO[str], path: Path) -> bool:
    """Whether ``path`` names the file held (False if nothing is at ``path``)."""
    try:
        at_path = os.stat(path)
    except OSError:
        return False
    return _identity(file) == f"{at_path.st_dev}:{at_path.st_ino}"


def _started(pid: int) -> str:
    """When process ``pid`` started, as the system counts it ("" where it cannot say):
    with the pid, it names one process (a pid alone may be reused)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists, owned by someone else
    return not started or _started(pid) in ("", started)


def _holder(file: IO[str]) -> str:
    file.seek(0)
    return file.read(300).strip() or "a process that did not say which"


def _program() -> str:
    """What this process is, for another to be told: its program's name only (its
    arguments may hold a key); the holder adds how to reach it (:meth:`describe`)."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    return os.path.basename(program)[:100] or "python"


def _lock(file: IO[str]) -> None:
    """Lock ``file`` exclusively without waiting; OSError if another holds it."""
    if sys.platform == "win32":
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _after_fork_in_child() -> None:
    for lock in list(_held):
        lock._forget_in_child()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
