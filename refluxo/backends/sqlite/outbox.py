"""The local scheduler's transactional outbox: deliveries written inside a store commit.

When the store and the scheduler share one SQLite file, a commit can record the run's next
delivery (and mark the one being processed done) in its own transaction: one durable write
per step, and no window between "committed" and "scheduled". This is a capability of the
pair, not of the store: :class:`~refluxo.backends.sqlite.store.SqliteStore` uses an outbox
only when the composition root hands it its scheduler's, so a store wired to any other
scheduler never records deliveries nobody reads.

After the transaction, :meth:`SqliteOutbox.committed` hands what it recorded to the
scheduler (its in-memory ready queue), with the record the commit produced, so the worker
that processed the current delivery can go on with the next one without reading anything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from refluxo.runtime.ports import Delivery


class Recorded(NamedTuple):
    """What one commit recorded: the name of the delivery it finished, the next delivery
    (and its name), and the record the commit produced."""

    done: str | None
    following: Delivery | None
    following_name: str | None
    record: Any


_COLUMNS = "(name, run_id, version, due_at, hop, available_at, state, attempts, updated_at)"
_ROW = "(?, ?, ?, ?, ?, ?, ?, 0, ?)"


def insert_deliveries(
    connection: sqlite3.Connection, deliveries: Sequence[Delivery], now: int
) -> int:
    """Record pending deliveries; a name already present (pending or done) is left alone.

    Returns how many rows were added.
    """
    cursor = connection.executemany(
        f"INSERT OR IGNORE INTO deliveries {_COLUMNS} VALUES {_ROW}",
        [
            (d.name, d.run_id, d.version, d.due_at, d.hop, d.due_at, "pending", now)
            for d in deliveries
        ],
    )
    return max(cursor.rowcount, 0)


def mark_done(connection: sqlite3.Connection, name: str, now: int) -> None:
    """Mark the delivery ``name`` delivered: it will not be delivered again."""
    connection.execute(
        "UPDATE deliveries SET state = 'done', updated_at = ? WHERE name = ? AND state != 'done'",
        (now, name),
    )


def record_step(
    connection: sqlite3.Connection,
    following: Delivery | None,
    done: Delivery | None,
    now: int,
) -> tuple[str | None, str | None]:
    """One statement: add ``following`` (pending; left alone if present) and mark ``done``
    done (added as done if absent, so a late copy of it is recognised as delivered).

    Returns both names (each computed once: a name is a hash).
    """
    rows: list[Any] = []
    following_name = done_name = None
    if following is not None:
        f, following_name = following, following.name
        rows += (following_name, f.run_id, f.version, f.due_at, f.hop, f.due_at, "pending", now)
    if done is not None:
        d, done_name = done, done.name
        rows += (done_name, d.run_id, d.version, d.due_at, d.hop, d.due_at, "done", now)
    if rows:
        values = ", ".join([_ROW] * (len(rows) // 8))
        connection.execute(
            f"INSERT INTO deliveries {_COLUMNS} VALUES {values} "
            "ON CONFLICT (name) DO UPDATE SET state = 'done', updated_at = excluded.updated_at "
            "WHERE excluded.state = 'done' AND deliveries.state != 'done'",
            rows,
        )
    return following_name, done_name


class SqliteOutbox:
    """Writes deliveries into a local scheduler's table within a caller's transaction.

    Args:
        path: the database file the scheduler reads (a store must share it).
        committed: tells the scheduler what the commits recorded (after they committed).
    """

    def __init__(self, path: str, committed: Callable[[Sequence[Recorded]], None]) -> None:
        self.path = path
        self._committed = committed

    def record(
        self,
        connection: sqlite3.Connection,
        next_delivery: Delivery | None,
        done: Delivery | None,
        now: int,
        record: Any = None,
    ) -> Recorded:
        """In the caller's open transaction: add ``next_delivery``, mark ``done`` done.

        Returns what to report to :meth:`committed` once the transaction has committed
        (``record``: the run as the commit left it).
        """
        following_name, done_name = record_step(connection, next_delivery, done, now)
        return Recorded(done_name, next_delivery, following_name, record)

    def committed(self, recorded: Sequence[Recorded]) -> None:
        """Call after the transaction that recorded ``recorded`` has committed."""
        if recorded:
            self._committed(recorded)
