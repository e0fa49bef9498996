"""The embedded :class:`~refluxo.runtime.ports.Scheduler`: due deliveries in SQLite.

Deliveries live in the ``deliveries`` table of the same database as the runs, so they
survive a restart of the process: on start, every pending delivery whose time has come is
delivered. Worker threads wait until the next due time (or until something is scheduled)
and hand each due delivery to the handler (the dispatcher). A delivery stays ``pending``
until it is acknowledged: by the commit itself (the store's transactional outbox) or by the
worker once the handler returns. A handler that raises leaves it pending with a backoff, so
it is retried.

Workers never die. When the database itself fails (a full disk, an I/O error) the handler
fails, and so does recording its retry; the delivery is still pending, so nothing is lost,
and the worker logs once for the whole episode, backs off (bounded, exponential) and tries
again, until the disk has room and the runs go on by themselves.

Claims are consistent within a process: a worker reads the due deliveries and marks one in
flight under the same lock under which a finished delivery leaves the in-flight set (after
its acknowledgement committed), so two workers never take the same delivery, and an idle
worker waits for the next delivery *not* in flight instead of spinning on one that is.
Each change wakes one worker, which wakes the next if more is due.

Delivery is at least once: two processes on one database may both deliver a delivery; the
dispatcher's optimistic lock makes the second a no-op. Acknowledged deliveries are kept for
a retention window (a late duplicate is still recognised as done), then purged by the
workers, at most once per purge interval, in short transactions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.outbox import SqliteOutbox, insert_deliveries, mark_done
from refluxo.errors import TransientError
from refluxo.runtime.ports import Delivery
from refluxo.steps import Clock, wall_clock_ms

logger = logging.getLogger("refluxo.scheduler")

Handler = Callable[[Delivery], Any]
"""Executes one delivery (blocking) and returns its result; raising leaves it pending."""

MAX_IDLE_WAIT_S = 1.0
"""Upper bound on a worker's wait, so a changed clock (or another process) is noticed."""

DONE_RETENTION_MS = 3_600_000
"""Delivered names are remembered for an hour, so late duplicates are recognised."""

PURGE_EVERY_MS = 60_000
"""The workers forget expired deliveries at most once a minute (by the scheduler's clock)."""

PURGE_BATCH = 1_000
"""Rows deleted per purge transaction, so the write lock is never held for long."""

TROUBLE_WAIT_S = (0.05, 5.0)
"""A failing worker's first and longest pause; the pause doubles on each failure."""


def retry_backoff_ms(attempts: int) -> int:
    """Delay before re-delivering after the handler failed ``attempts`` times (capped 60 s)."""
    return int(min(60_000, 100 * 2 ** min(attempts, 20)))


def trouble_wait_s(failures: int) -> float:
    """A worker's pause after ``failures`` consecutive failures of its own loop."""
    first, longest = TROUBLE_WAIT_S
    return float(min(longest, first * 2 ** min(max(failures - 1, 0), 20)))


class LocalScheduler:
    """Durable local deliveries, delivered by background workers (or :meth:`drain`).

    Args:
        db: the database holding the ``deliveries`` table.
        handler: executes a delivery; may be set after construction, before :meth:`start`.
        clock: epoch milliseconds (due times, backoffs, retention).
        workers: background threads started by :meth:`start`.
        batch: accepted for compatibility; workers claim one delivery at a time.
        retention_ms: how long acknowledged deliveries are remembered.
        purge_every_ms: how often (at most) the workers forget expired ones.
    """

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        handler: Handler | None = None,
        clock: Clock = wall_clock_ms,
        workers: int = 2,
        batch: int = 32,
        retention_ms: int = DONE_RETENTION_MS,
        purge_every_ms: int = PURGE_EVERY_MS,
    ) -> None:
        self.db = db
        self.handler = handler
        self.clock = clock
        self.workers = workers
        self.batch = batch
        self.retention_ms = retention_ms
        self.purge_every_ms = purge_every_ms
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        """Idle workers wait here; one is notified per change."""
        self._settled = threading.Condition(self._lock)
        """:meth:`wait_idle` waits here; notified whenever a delivery leaves the flight."""
        self._in_flight: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stop = threading.Event()
        self._last_purge: int | None = None
        self._troubled = False
        self.delivered = 0
        """Deliveries whose handler returned (progress an operator can watch)."""
        self.failures = 0
        """Deliveries whose handler raised (each left pending and retried)."""
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
        """Tell a waiting worker that deliveries or the clock changed."""
        with self._lock:
            self._wakeup.notify()

    def start(self) -> None:
        """Start the worker threads (daemon threads; call :meth:`stop` to end them)."""
        if self.handler is None:
            raise RuntimeError("LocalScheduler needs a handler before it starts")
        self._stopping = False
        self._stop.clear()
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"refluxo-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers after their current delivery."""
        with self._lock:
            self._stopping = True
            self._stop.set()
            self._wakeup.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def drain(self, limit: int | None = None) -> int:
        """Deliver, in this thread, every delivery due now (and those they make due).

        Returns how many were delivered. For tests and one-shot command-line use.
        """
        count = 0
        while limit is None or count < limit:
            with self._lock:
                claimed, _ = self._claim()
            if claimed is None:
                return count
            self._deliver(claimed)
            count += 1
        return count

    def pending(self) -> list[Delivery]:
        """Every delivery not yet acknowledged, soonest first."""
        with self.db.reading() as connection:
            rows = connection.execute(
                "SELECT run_id, version, due_at, hop FROM deliveries WHERE state = 'pending' "
                "ORDER BY available_at"
            ).fetchall()
        return [Delivery(*row) for row in rows]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is due now and nothing is being delivered. True if reached."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            with self._lock:
                while not deadline.is_set():
                    if not self._in_flight and not self._due_exists():
                        return True
                    self._settled.wait(0.05)
            return False
        finally:
            timer.cancel()

    def acknowledge(self, delivery: Delivery) -> None:
        """Mark ``delivery`` done: it will not be delivered again."""
        self._acknowledge(delivery)

    def purge(self, older_than_ms: int = DONE_RETENTION_MS) -> int:
        """Forget acknowledged deliveries older than ``older_than_ms``; returns how many.

        Pending deliveries are never forgotten. Deletes in batches of
        :data:`PURGE_BATCH`, one short transaction each. A done delivery is old when both
        its acknowledgement and its due time are (the due time is what the index orders,
        so each batch is a range scan, whatever the size of the table).
        """
        cutoff = self.clock() - older_than_ms
        total = 0
        while True:
            with self.db.write() as connection:
                deleted = connection.execute(
                    "DELETE FROM deliveries WHERE name IN (SELECT name FROM deliveries "
                    "WHERE state = 'done' AND available_at < ? AND updated_at < ? LIMIT ?)",
                    (cutoff, cutoff, PURGE_BATCH),
                ).rowcount
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    # -- the workers ----------------------------------------------------------------------

    def _work(self) -> None:
        """A worker's loop: it survives every exception, backing off while they last."""
        failures = 0
        while not self._stopping:
            try:
                self._purge_if_due()
                with self._lock:
                    claimed, wait = self._claim()
                    if claimed is None and wait > 0 and not self._stopping:
                        self._wakeup.wait(wait)
                if claimed is not None:
                    self._deliver(claimed)
            except Exception as err:
                failures += 1
                self._trouble(err)
                self._stop.wait(trouble_wait_s(failures))
                continue
            failures = 0
            if claimed is not None and self._troubled:
                self._recovered()

    def _trouble(self, error: Exception) -> None:
        """Log the first failure of an episode (all workers together); then only debug."""
        with self._lock:
            first, self._troubled = not self._troubled, True
        if first:
            logger.error(
                "local scheduler: %s; deliveries stay pending and workers retry with backoff",
                error,
                exc_info=not isinstance(error, TransientError),
            )
        else:
            logger.debug("local scheduler still failing: %s", error)

    def _recovered(self) -> None:
        with self._lock:
            was, self._troubled = self._troubled, False
        if was:
            logger.warning("local scheduler recovered: delivering again")

    def _purge_if_due(self) -> None:
        """Purge expired deliveries if no worker did within :attr:`purge_every_ms`."""
        now = self.clock()
        with self._lock:
            last = self._last_purge
            if last is not None and 0 <= now - last < self.purge_every_ms:
                return
            self._last_purge = now
        purged = self.purge(self.retention_ms)
        if purged:
            logger.debug("local scheduler forgot %d delivered deliveries", purged)

    # -- internals (the caller holds ``self._lock`` where noted) --------------------------

    def _claim(self) -> tuple[Delivery | None, float]:
        """Under the lock: the soonest due delivery not in flight, now marked in flight.

        Returns it, or ``None`` and how long to wait (seconds) for the soonest one not in
        flight. Wakes one more worker if another delivery is due.
        """
        now = self.clock()
        with self.db.reading() as connection:
            rows = connection.execute(
                "SELECT name, run_id, version, due_at, hop, available_at FROM deliveries "
                "WHERE state = 'pending' ORDER BY available_at LIMIT ?",
                (len(self._in_flight) + 2,),
            ).fetchall()
        waiting = [row for row in rows if row[0] not in self._in_flight]
        if not waiting:
            return None, MAX_IDLE_WAIT_S
        name, run_id, version, due_at, hop, available_at = waiting[0]
        if available_at > now:
            return None, min(MAX_IDLE_WAIT_S, (available_at - now) / 1000)
        self._in_flight.add(name)
        if len(waiting) > 1 and waiting[1][5] <= now:
            self._wakeup.notify()
        return Delivery(run_id, version, due_at, hop), 0.0

    def _due_exists(self) -> bool:
        with self.db.reading() as connection:
            row = connection.execute(
                "SELECT 1 FROM deliveries WHERE state = 'pending' AND available_at <= ? LIMIT 1",
                (self.clock(),),
            ).fetchone()
        return row is not None

    def _deliver(self, delivery: Delivery) -> None:
        """Run the handler, then acknowledge or reschedule; raises if neither is possible."""
        assert self.handler is not None
        try:
            try:
                result = self.handler(delivery)
            except Exception as err:
                self.failures += 1
                self._retry_later(delivery)  # raises if the database fails too
                if isinstance(err, TransientError):
                    logger.warning(
                        "delivery of run %s v%s failed: %s; will retry",
                        delivery.run_id,
                        delivery.version,
                        err,
                    )
                else:
                    logger.exception(
                        "delivery of run %s v%s failed; will retry",
                        delivery.run_id,
                        delivery.version,
                    )
            else:
                self.delivered += 1
                if not getattr(result, "acknowledged", False):
                    self._acknowledge(delivery)
        finally:
            with self._lock:
                self._in_flight.discard(delivery.name)
                self._settled.notify_all()

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
