"""One process at a time delivers a database's steps: :class:`DeliveryLock`.

The local scheduler keeps the deliveries it has handed out in memory: a second process on
the same database cannot see them, and would run the same steps at the same time (a
``refluxo run`` in one terminal while ``refluxo serve`` runs in another). Commits stay
exactly once either way (optimistic locking), but a node's side effects would not. So the
process that delivers holds an exclusive lock on a file beside the database, and another
one is refused with a message naming the holder. The kernel releases the lock when its
process ends, however it ends (``kill -9`` included): no stale lock to clean up.

Processes that only read the database, or write to it without delivering (a run started or
resumed with no workers), need no lock: the delivering process picks up what they record.

The standard library does this in a few lines (``fcntl.flock``; ``msvcrt.locking`` on
Windows), so no locking library is added for it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from refluxo.backends.sqlite.errors import DatabaseInUse, LocalDatabaseError

__all__ = ["LOCK_SUFFIX", "DatabaseInUse", "DeliveryLock"]

LOCK_SUFFIX = ".lock"
"""The lock file's name: the database's, with this added (``refluxo.db.lock``)."""


class DeliveryLock:
    """The right to deliver the steps of the database at ``database``: :meth:`acquire`
    takes it or raises :class:`DatabaseInUse`; :meth:`release` gives it back."""

    def __init__(self, database: Path) -> None:
        self.database = database
        # Beside the file itself: a database reached through a symbolic link (or by a
        # relative path from elsewhere) has the same lock.
        real = database.resolve()
        self.path = real.with_name(real.name + LOCK_SUFFIX)
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        if self._file is not None:
            return
        try:
            file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        except OSError as err:
            raise LocalDatabaseError(
                f"cannot deliver the steps of {self.database}: its lock file {self.path} "
                f"cannot be opened ({err.strerror or err})"
            ) from None
        try:
            _lock(file)
        except OSError:
            file.seek(0)
            holder = file.read(300).strip() or "a process that did not say which"
            file.close()
            raise DatabaseInUse(
                f"another process is delivering the steps of {self.database} ({holder}): "
                "two processes would run the same steps at once. Send the command to it "
                "with --url, or stop it first (a library: one runtime per database)."
            ) from None
        self._file = file
        self.describe("")

    def describe(self, where: str) -> None:
        """Say, in the lock file, what holds it: the process and ``where`` (how to reach
        it, e.g. ``on http://127.0.0.1:8080``), which a refused process reports."""
        file = self._file
        if file is None:
            return
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()}: {' '.join(filter(None, [_program(), where[:200]]))}\n")
        file.flush()

    def release(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()  # closing the file releases its lock


def _program() -> str:
    """What this process is, for another to be told: the program and its command
    (``refluxo serve``), never its options (they may hold a key)."""
    program, *arguments = sys.argv or ["python"]
    words = [os.path.basename(program) or "python"]
    if arguments and arguments[0].isidentifier():
        words.append(arguments[0])
    return " ".join(words)[:100]


def _lock(file: IO[str]) -> None:
    """Lock ``file`` exclusively without waiting; OSError if another holds it."""
    if sys.platform == "win32":
        import msvcrt

        file.seek(0)
        msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
