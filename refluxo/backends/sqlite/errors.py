"""What keeps a process from using a local database: the errors a user must act on."""

from __future__ import annotations

from refluxo.errors import RefluxoError


class LocalDatabaseError(RefluxoError):
    """A local database this process cannot use; the message says what to do."""


class DatabaseInUse(LocalDatabaseError):
    """Another process delivers the steps of this database
    (:mod:`refluxo.backends.sqlite.ownership`)."""


class DatabaseUnreadable(LocalDatabaseError):
    """The file is not a SQLite database, or one damaged beyond reading."""
