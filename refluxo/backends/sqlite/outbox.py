"""The local scheduler's transactional outbox: deliveries written inside a store commit.

When the store and the scheduler share one SQLite file, a commit can record the run's next
delivery (and mark the one being processed done) in its own transaction: one durable write
per step, and no window between "committed" and "scheduled". This is a capability of the
pair, not of the store: :class:`~refluxo.backends.sqlite.store.SqliteStore` uses an outbox
only when the composition root hands it its scheduler's, so a store wired to any other
scheduler never records deliveries nobody reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from refluxo.runtime.ports import Delivery


def insert_deliveries(
    connection: sqlite3.Connection, deliveries: Sequence[Delivery], now: int
) -> None:
    """Record pending deliveries; a name already present (pending or done) is left alone."""
    connection.executemany(
        "INSERT OR IGNORE INTO deliveries "
        "(name, run_id, version, due_at, hop, available_at, state, attempts, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
        [(d.name, d.run_id, d.version, d.due_at, d.hop, d.due_at, now) for d in deliveries],
    )


def mark_done(connection: sqlite3.Connection, name: str, now: int) -> None:
    """Mark the delivery ``name`` delivered: it will not be delivered again."""
    connection.execute(
        "UPDATE deliveries SET state = 'done', updated_at = ? WHERE name = ? AND state != 'done'",
        (now, name),
    )


class SqliteOutbox:
    """Writes deliveries into a local scheduler's table within a caller's transaction.

    Args:
        path: the database file the scheduler reads (a store must share it).
        wake: tells the scheduler that deliveries were added (after the commit).
    """

    def __init__(self, path: str, wake: Callable[[], None]) -> None:
        self.path = path
        self._wake = wake

    def record(
        self,
        connection: sqlite3.Connection,
        next_delivery: Delivery | None,
        done: Delivery | None,
        now: int,
    ) -> None:
        """In the caller's open transaction: add ``next_delivery``, mark ``done`` done."""
        if next_delivery is not None:
            insert_deliveries(connection, [next_delivery], now)
        if done is not None:
            mark_done(connection, done.name, now)

    def committed(self) -> None:
        """Call after the transaction that recorded deliveries has committed."""
        self._wake()
