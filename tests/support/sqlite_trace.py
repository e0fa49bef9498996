"""Seeing every SQL statement a SQLite database of the runtime executes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from refluxo.backends.sqlite.db import SqliteDatabase


def trace_statements(db: SqliteDatabase, seen: Callable[[str], None]) -> None:
    """Call ``seen`` with each statement run on ``db`` from now on.

    The pool is closed first, so every connection the runtime uses afterwards is a new
    one, opened traced (``sqlite3``'s trace callback, set per connection).
    """
    connect = db._connect

    def traced() -> sqlite3.Connection:
        connection = connect()
        connection.set_trace_callback(seen)
        return connection

    db.close()
    db._connect = traced  # type: ignore[method-assign]
