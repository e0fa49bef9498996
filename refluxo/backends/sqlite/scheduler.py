"""The embedded :class:`~refluxo.runtime.ports.Scheduler`: due deliveries in SQLite.

Deliveries live in the ``deliveries`` table of the same database as the runs, so they
survive a restart of the process: on start, every pending delivery whose time has come is
delivered. Worker threads wait on a condition until the next due time (or until something
is scheduled) and hand each due delivery to the handler (the dispatcher). A delivery stays
``pending`` until it is acknowledged: by the commit itself (the store's transactional
outbox) or by the worker once the handler returns. A handler that raises leaves it pending
with a backoff, so it is retried.

Delivery is at least once: two processes on one database may both deliver a delivery; the
dispatcher's optimistic lock makes the second a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.outbox import SqliteOutbox, insert_deliveries, mark_done
from refluxo.engine import Clock, wall_clock_ms
from refluxo.runtime.ports import Delivery

logger = logging.getLogger("refluxo.scheduler")

Handler = Callable[[Delivery], Any]
"""Executes one delivery (blocking) and returns its result; raising leaves it pending."""

MAX_IDLE_WAIT_S = 1.0
"""Upper bound on a worker's wait, so a changed clock (or another process) is noticed."""

DONE_RETENTION_MS = 3_600_000
"""Delivered names are remembered for an hour, so late duplicates are recognised."""


def retry_backoff_ms(attempts: int) -> int:
    """Delay before re-delivering after the handler failed ``attempts`` times (capped 60 s)."""
    return int(min(60_000, 100 * 2 ** min(attempts, 20)))


class LocalScheduler:
    """Durable local deliveries, delivered by background workers (or :meth:`drain`)."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        handler: Handler | None = None,
        clock: Clock = wall_clock_ms,
        workers: int = 2,
        batch: int = 32,
    ) -> None:
        self.db = db
        self.handler = handler
        self.clock = clock
        self.workers = workers
        self.batch = batch
        self._condition = threading.Condition()
        self._in_flight: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._changes = 0
        self.delivered = 0
        self.failures = 0
        self.outbox = SqliteOutbox(str(db.path), self.wake)
        """This scheduler's outbox, for a store on the same file to record deliveries in its
        commits (wired by the composition root)."""

    # -- the Scheduler protocol ---------------------------------------------------------

    def schedule(self, delivery: Delivery) -> None:
        with self.db.write() as connection:
            insert_deliveries(connection, [delivery], self.clock())
        self.wake()

    # -- running ------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell waiting workers that deliveries or the clock changed."""
        with self._condition:
            self._changes += 1
            self._condition.notify_all()

    def start(self) -> None:
        """Start the worker threads (daemon threads; call :meth:`stop` to end them)."""
        if self.handler is None:
            raise RuntimeError("LocalScheduler needs a handler before it starts")
        self._stopping = False
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"refluxo-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers after their current delivery."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def drain(self, limit: int | None = None) -> int:
        """Deliver, in this thread, every delivery due now (and those they make due).

        Returns how many were delivered. For tests and one-shot command-line use.
        """
        count = 0
        while limit is None or count < limit:
            claimed = self._claim(1)
            if not claimed:
                return count
            self._deliver(claimed[0])
            count += 1
        return count

    def pending(self) -> list[Delivery]:
        """Every delivery not yet acknowledged, soonest first."""
        rows = (
            self.db.connection()
            .execute(
                "SELECT run_id, version, due_at, hop FROM deliveries WHERE state = 'pending' "
                "ORDER BY available_at"
            )
            .fetchall()
        )
        return [Delivery(*row) for row in rows]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is due now and nothing is being delivered. True if reached."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            with self._condition:
                while not deadline.is_set():
                    if not self._in_flight and not self._due_exists():
                        return True
                    self._condition.wait(0.05)
            return False
        finally:
            timer.cancel()

    # -- internals ------------------------------------------------------------------------

    def _due_exists(self) -> bool:
        row = (
            self.db.connection()
            .execute(
                "SELECT 1 FROM deliveries WHERE state = 'pending' AND available_at <= ? LIMIT 1",
                (self.clock(),),
            )
            .fetchone()
        )
        return row is not None

    def _claim(self, limit: int) -> list[Delivery]:
        """Due deliveries not already in flight in this process, now marked in flight."""
        rows = (
            self.db.connection()
            .execute(
                "SELECT name, run_id, version, due_at, hop FROM deliveries "
                "WHERE state = 'pending' AND available_at <= ? ORDER BY available_at LIMIT ?",
                (self.clock(), limit + len(self._in_flight)),
            )
            .fetchall()
        )
        claimed: list[Delivery] = []
        with self._condition:
            for name, run_id, version, due_at, hop in rows:
                if name not in self._in_flight and len(claimed) < limit:
                    self._in_flight.add(name)
                    claimed.append(Delivery(run_id, version, due_at, hop))
        return claimed

    def _next_due_in(self) -> float:
        row = (
            self.db.connection()
            .execute("SELECT min(available_at) FROM deliveries WHERE state = 'pending'")
            .fetchone()
        )
        if row[0] is None:
            return MAX_IDLE_WAIT_S
        due_at: int = row[0]
        return max(0.0, min(MAX_IDLE_WAIT_S, (due_at - self.clock()) / 1000))

    def _work(self) -> None:
        while not self._stopping:
            claimed = self._claim(1)
            if claimed:
                self._deliver(claimed[0])
                continue
            with self._condition:
                seen = self._changes
                wait = self._next_due_in()
                if not self._stopping and seen == self._changes and wait > 0:
                    self._condition.wait(wait)

    def _deliver(self, delivery: Delivery) -> None:
        assert self.handler is not None
        try:
            result = self.handler(delivery)
        except Exception:
            self.failures += 1
            logger.exception(
                "delivery of run %s v%s failed; will retry", delivery.run_id, delivery.version
            )
            self._retry_later(delivery)
        else:
            self.delivered += 1
            if not getattr(result, "acknowledged", False):
                self._acknowledge(delivery)
        finally:
            with self._condition:
                self._in_flight.discard(delivery.name)
                self._changes += 1
                self._condition.notify_all()

    def acknowledge(self, delivery: Delivery) -> None:
        """Mark ``delivery`` done: it will not be delivered again."""
        self._acknowledge(delivery)

    def _acknowledge(self, delivery: Delivery) -> None:
        with self.db.write() as connection:
            mark_done(connection, delivery.name, self.clock())

    def _retry_later(self, delivery: Delivery) -> None:
        now = self.clock()
        with self.db.write() as connection:
            row = connection.execute(
                "SELECT attempts FROM deliveries WHERE name = ?", (delivery.name,)
            ).fetchone()
            attempts = (row[0] if row else 0) + 1
            connection.execute(
                "UPDATE deliveries SET attempts = ?, available_at = ?, updated_at = ? "
                "WHERE name = ? AND state = 'pending'",
                (attempts, now + retry_backoff_ms(attempts), now, delivery.name),
            )

    def purge(self, older_than_ms: int = DONE_RETENTION_MS) -> int:
        """Forget acknowledged deliveries older than the retention window."""
        with self.db.write() as connection:
            cursor = connection.execute(
                "DELETE FROM deliveries WHERE state = 'done' AND updated_at < ?",
                (self.clock() - older_than_ms,),
            )
        return cursor.rowcount
