"""The embedded :class:`~refluxo.runtime.ports.Scheduler`: due deliveries in SQLite.

Deliveries live in the ``deliveries`` table of the same database as the runs, so they
survive a restart of the process: the table is the durable record, and on start every
pending delivery in it is loaded and delivered when due. Workers do not poll it: they take
deliveries from an in-memory ready queue (soonest first) that the table's writers feed, the
store's commits (its transactional outbox) and :meth:`LocalScheduler.schedule`, and wait on
a condition until one is due; each addition wakes one worker (``notify``), which wakes one
more if more is due.

A claim takes a delivery out of the ready queue under the scheduler's lock, so two workers
never hold the same one, however long its step runs (a step still running after
:data:`SLOW_STEP_S` is logged, once, and left to finish). It stays ``pending`` in the table
until it is acknowledged (by the commit itself, or by the worker once the handler returns):
a delivery claimed but never finished (the process died) is delivered again after a
restart. A handler that raises leaves it pending with a backoff, so it is retried. One
process at a time delivers a database's steps (:mod:`refluxo.backends.sqlite.ownership`):
no other process can hand out what this one holds.

The worker that commits a step goes on with the run: when the commit recorded the run's next
delivery, due now, the outbox reserves it for that worker, which delivers it with the record
the commit returned (no claim, no reload of the head), within the dispatcher's own step
budget per delivery. It gives the run back to the queue after :data:`CONTINUE_LIMIT`
deliveries in a row if other deliveries are waiting, so a long run cannot starve them.

Workers never die. When the database itself fails (a full disk, an I/O error) the handler
fails, and so does recording its retry; the delivery is still pending, so nothing is lost,
and the worker logs once for the whole episode, backs off (bounded, exponential) and tries
again, until the disk has room and the runs go on by themselves.

Delivery is at least once (a step interrupted by the process's end runs again): the table
is read again every :data:`RESCAN_EVERY_S` (and on :meth:`LocalScheduler.wake`) for
pending deliveries written by another process that does not deliver (a run started or
resumed with no workers). Acknowledged deliveries are kept for a retention window (a late
duplicate is still recognised as done), then purged by the workers, at most once per purge
interval, in short transactions.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.errors import DatabaseInUse
from refluxo.backends.sqlite.outbox import Recorded, SqliteOutbox, insert_deliveries, mark_done
from refluxo.backends.sqlite.ownership import DeliveryLock
from refluxo.errors import TransientError, ends_the_step, where_failed
from refluxo.runtime.ports import Delivery
from refluxo.steps import Clock, wall_clock_ms

logger = logging.getLogger("refluxo.scheduler")

Handler = Callable[[Delivery], Any]
"""Executes one delivery (blocking) and returns its result; raising leaves it pending."""

Continuation = Callable[[Delivery, Any], Any]
"""Executes one delivery given the run's record as the previous commit returned it."""

MAX_IDLE_WAIT_S = 1.0
"""Upper bound on a worker's wait, so a changed clock (or another process) is noticed."""

RESCAN_EVERY_S = 1.0
"""How often the workers read the table for due deliveries they do not know (another
process's), and look for steps running for long."""

RESCAN_LIMIT = 1_000
"""Due deliveries read per periodic rescan (the soonest)."""

SLOW_STEP_S = 900.0
"""How long a delivery may run before it is logged as slow (once; it is never handed out
again while its step runs)."""

CONTINUE_LIMIT = 16
"""Deliveries of one run a worker delivers in a row before it lets waiting ones go first."""

DONE_RETENTION_MS = 3_600_000
"""Delivered names are remembered for an hour, so late duplicates are recognised."""

PURGE_EVERY_MS = 60_000
"""The workers forget expired deliveries at most once a minute (by the scheduler's clock)."""

PURGE_BATCH = 1_000
"""Rows deleted per purge transaction, so the write lock is never held for long."""

TROUBLE_WAIT_S = (0.05, 5.0)
"""A failing worker's first and longest pause; the pause doubles on each failure."""

_READY, _CLAIMED, _RESERVED = 0, 1, 2


class _Entry:
    """A pending delivery the scheduler knows: ready (queued), claimed, or reserved for
    the worker whose commit recorded it. Replaced, never reused, when handed out again."""

    __slots__ = ("available_at", "claimed_at", "delivery", "name", "seq", "slow", "state")

    def __init__(self, delivery: Delivery, name: str, available_at: int, state: int) -> None:
        self.delivery = delivery
        self.name = name
        self.available_at = available_at
        self.state = state
        self.seq = 0
        self.claimed_at = 0.0
        self.slow = False


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
        slow_step_s: how long a delivery may run before it is logged as slow (once); it
            is never handed out again while its step runs: that would run the step twice at
            once.
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
        slow_step_s: float = SLOW_STEP_S,
    ) -> None:
        self.db = db
        self.handler = handler
        self.continuation: Continuation | None = None
        """Delivers a run's next delivery with the record its commit returned (no reload);
        without one, every delivery goes to :attr:`handler` and waits in the queue."""
        self.clock = clock
        self.workers = workers
        self.batch = batch
        self.retention_ms = retention_ms
        self.purge_every_ms = purge_every_ms
        self.slow_step_s = slow_step_s
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        """Idle workers wait here; one is notified per change."""
        self._settled = threading.Condition(self._lock)
        """:meth:`wait_idle` waits here; notified whenever a delivery is finished."""
        self._entries: dict[str, _Entry] = {}
        """Every pending delivery known, by name."""
        self._ready: list[tuple[int, int, _Entry]] = []
        """The ready queue: a heap by due time (stale tuples are skipped when popped)."""
        self._held: dict[str, _Entry] = {}
        """The claimed and reserved deliveries, by name."""
        self._successors: dict[str, tuple[_Entry, Any]] = {}
        """By the name of a claimed delivery: the next delivery its commit reserved for the
        same worker, and the record the commit returned."""
        self._seq = itertools.count()
        self._loaded = False
        self._rescan_wanted = True
        self._next_rescan = 0.0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stop = threading.Event()
        self._last_purge: int | None = None
        self._troubled = False
        self.delivered = 0
        """Deliveries whose handler returned (progress an operator can watch)."""
        self.failures = 0
        """Deliveries whose handler raised (each left pending and retried)."""
        self._ownership = DeliveryLock(db)
        """Held while this scheduler delivers: one process at a time may."""
        self._delivering = False
        """Whether the workers may claim deliveries: the right to deliver is held, and its
        lock file is still the one at its path (see :meth:`_check_ownership`)."""
        self.outbox = SqliteOutbox(str(db.path), self._recorded)
        """This scheduler's outbox, for a store on the same file to record deliveries in its
        commits (wired by the composition root)."""

    # -- the Scheduler protocol ---------------------------------------------------------

    def schedule(self, delivery: Delivery) -> None:
        name = delivery.name
        with self.db.write() as connection:
            added = insert_deliveries(connection, [delivery], self.clock())
        if added:  # else already recorded: known, done, or another process's (rescanned)
            with self._lock:
                self._add(delivery, name, delivery.due_at)

    # -- running ------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell a waiting worker that the table or the clock changed (it reads the table)."""
        with self._lock:
            self._rescan_wanted = True
            self._wakeup.notify()

    def start(self, *, standby: bool = False) -> None:
        """Start the worker threads (daemon threads; call :meth:`stop` to end them).

        Raises :class:`~refluxo.backends.sqlite.errors.DatabaseInUse` if another process
        delivers this database's steps; with ``standby``, start anyway and deliver once
        that process stops (the workers try again at every rescan, about every second).
        """
        if self.handler is None:
            raise RuntimeError("LocalScheduler needs a handler before it starts")
        try:
            self._ownership.acquire()
        except DatabaseInUse:
            if not standby:
                raise
        with self._lock:
            self._delivering = self._ownership.held
            self._stopping = False
            self._rescan_wanted = True  # the first worker loads the table
        self._stop.clear()
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"refluxo-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def announce(self, where: str) -> None:
        """Tell a process that would deliver this database's steps too (and is refused)
        how to reach this one, e.g. ``serve on http://127.0.0.1:8080``."""
        self._ownership.describe(where)

    def request_stop(self) -> None:
        """Tell the workers to stop after their current delivery, without waiting for them
        (:meth:`stop` waits)."""
        with self._lock:
            self._stopping = True
            self._stop.set()
            self._wakeup.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers after their current delivery, waiting up to ``timeout`` for
        them all."""
        self.request_stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        with self._lock:
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            if not self._threads:
                self._ownership.release()
            # else: a step still runs past the timeout; its worker releases the right to
            # deliver when it ends (:meth:`_worker_ended`), not before: another process
            # must not run that step meanwhile.

    def drain(self, limit: int | None = None) -> int:
        """Deliver, in this thread, every delivery due now (and those they make due).

        Returns how many were delivered. For tests and one-shot command-line use. Raises
        :class:`~refluxo.backends.sqlite.ownership.DatabaseInUse` if another process
        delivers this database's steps.
        """
        owned = self._ownership.held
        if owned and not self._delivering:
            raise DatabaseInUse(
                f"{self._ownership.path} was replaced and another process holds it: this "
                "process delivers nothing until it can lock it again"
            )
        self._ownership.acquire()
        try:
            with self._lock:
                self._rescan(synchronise=True)
            count = 0
            while limit is None or count < limit:
                with self._lock:
                    claimed, _ = self._pop_due(self.clock())
                if claimed is None:
                    return count
                count += self._run(claimed, None if limit is None else limit - count, eager=False)
            return count
        finally:
            if not owned:
                self._ownership.release()

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
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if not self._held and self._peek_due(self.clock()) is None:
                    if not self._unknown_due():
                        return True
                    self._rescan_wanted = True
                    self._wakeup.notify()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(0.05, remaining))

    def acknowledge(self, delivery: Delivery) -> None:
        """Mark ``delivery`` done: it will not be delivered again."""
        self._acknowledge(delivery)
        with self._lock:
            entry = self._entries.get(delivery.name)
            if entry is not None and entry.state == _READY:
                del self._entries[entry.name]

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
        try:
            self._deliver_until_stopped()
        finally:
            self._worker_ended()

    def _worker_ended(self) -> None:
        """The last worker of a stopped scheduler to end gives up the right to deliver."""
        with self._lock:
            current = threading.current_thread()
            self._threads = [t for t in self._threads if t is not current and t.is_alive()]
            if self._stopping and not self._threads:
                self._ownership.release()

    def _deliver_until_stopped(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                self._purge_if_due()
                claimed = self._next()
                if claimed is not None:
                    self._run(claimed, None, eager=True)
            except BaseException as err:  # CancelledError, SystemExit...: no signal reaches here
                failures += 1
                self._trouble(err)
                self._stop.wait(trouble_wait_s(failures))
                continue
            failures = 0
            if claimed is not None and self._troubled:
                self._recovered()

    def _next(self) -> _Entry | None:
        """Claim the soonest due delivery, waiting (woken one at a time) until there is one."""
        with self._lock:
            while not self._stopping:
                if self._rescan_wanted or time.monotonic() >= self._next_rescan:
                    self._rescan()
                if not self._delivering:  # another process delivers: try again later
                    self._wakeup.wait(RESCAN_EVERY_S)
                    continue
                now = self.clock()
                claimed, wait = self._pop_due(now)
                if claimed is not None:
                    if self._peek_due(now) is not None:
                        self._wakeup.notify()  # more is due: one more worker
                    return claimed
                self._wakeup.wait(wait)
        return None

    def _run(self, claimed: _Entry, limit: int | None, *, eager: bool) -> int:
        """Deliver ``claimed``, then the deliveries its commits reserve for this thread.

        ``eager``: go on with the run for up to :data:`CONTINUE_LIMIT` deliveries whatever
        is waiting (then only while nothing else is due); otherwise only while nothing else
        is due. ``limit``: deliver at most this many. Returns how many were delivered.
        """
        count = 0
        current: tuple[_Entry, Any] | None = (claimed, None)
        while current is not None:
            entry, record = current
            count += 1
            if limit is not None and count >= limit:
                go_on: bool | None = False
            elif eager and count < CONTINUE_LIMIT:
                go_on = True
            else:
                go_on = None
            current = self._deliver(entry, record, go_on)
            if current is not None and eager:
                self._purge_if_due()
        return count

    def _trouble(self, error: BaseException) -> None:
        """Log the first failure of an episode (all workers together); then only debug."""
        with self._lock:
            first, self._troubled = not self._troubled, True
        if first:
            logger.error(
                "local scheduler: %s; deliveries stay pending and workers retry with backoff",
                _told(error),
            )
        else:
            logger.debug("local scheduler still failing: %s", _told(error))

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

    # -- delivering -------------------------------------------------------------------------

    def _deliver(self, entry: _Entry, record: Any, go_on: bool | None) -> tuple[_Entry, Any] | None:
        """Run the handler, then acknowledge or reschedule; raises if neither is possible.

        Returns the next delivery to deliver in this thread (reserved by the commit), if any.
        """
        assert self.handler is not None
        delivery = entry.delivery
        try:
            if record is not None and self.continuation is not None:
                result = self.continuation(delivery, record)
            else:
                result = self.handler(delivery)
        except BaseException as err:
            if ends_the_step(err):  # Ctrl-C in a drain() on the main thread, a cancellation
                self._finish(entry, requeue_at=entry.available_at)
                raise
            self.failures += 1
            try:
                available_at = self._retry_later(delivery)
            except BaseException:
                self._finish(entry, requeue_at=entry.available_at)
                raise
            self._finish(entry, requeue_at=available_at, forget=available_at is None)
            log = logger.warning if isinstance(err, TransientError) else logger.error
            log(
                "delivery of run %s v%s failed: %s; will retry",
                delivery.run_id,
                delivery.version,
                _told(err),
            )
            return None
        self.delivered += 1
        if not getattr(result, "acknowledged", False):
            try:
                self._acknowledge(delivery)
            except BaseException:
                self._finish(entry, requeue_at=entry.available_at)
                raise
        return self._finish(entry, go_on=go_on)

    def _finish(
        self,
        entry: _Entry,
        *,
        requeue_at: int | None = None,
        forget: bool = False,
        go_on: bool | None = False,
    ) -> tuple[_Entry, Any] | None:
        """A claimed delivery is over: forgotten (acknowledged), or queued again at
        ``requeue_at``. Its reserved successor is returned to go on with (``go_on``: True,
        or None and nothing else is due), or queued."""
        with self._lock:
            if self._held.get(entry.name) is entry:
                del self._held[entry.name]
            if self._entries.get(entry.name) is entry:
                if requeue_at is None or forget:
                    del self._entries[entry.name]
                else:
                    entry.available_at = requeue_at
                    self._enqueue(entry)
            following = self._successors.pop(entry.name, None)
            self._settled.notify_all()
            if following is None:
                return None
            successor = following[0]
            if self._entries.get(successor.name) is not successor or successor.state != _RESERVED:
                return None  # no longer reserved for this worker
            ok = requeue_at is None and not self._stopping and self._delivering
            if ok and (go_on or (go_on is None and self._peek_due(self.clock()) is None)):
                successor.state = _CLAIMED
                successor.claimed_at = time.monotonic()
                return following
            del self._held[successor.name]
            self._enqueue(successor)
            return None

    def _recorded(self, recorded: Sequence[Recorded]) -> None:
        """The outbox's report, after a commit: what it marked done and recorded next.

        A next delivery due now, recorded by the commit of a delivery a worker holds, is
        reserved for that worker (it goes on with the run when the handler returns); any
        other goes to the ready queue, waking one worker.
        """
        now = self.clock()
        with self._lock:
            for done, following, name, record in recorded:
                holder: _Entry | None = None
                if done is not None:
                    known = self._entries.get(done)
                    if known is not None and known.state == _CLAIMED:
                        holder = known
                    elif known is not None and known.state == _READY:
                        del self._entries[known.name]  # delivered by someone else
                if following is None or name is None:
                    continue
                if (
                    holder is None
                    or self.continuation is None
                    or record is None
                    or following.due_at > now
                ):
                    self._add(following, name, following.due_at)
                    continue
                existing = self._entries.get(name)
                if existing is None:
                    entry = _Entry(following, name, following.due_at, _RESERVED)
                    self._entries[name] = entry
                elif existing.state == _READY:
                    entry = existing
                    entry.state = _RESERVED
                else:
                    continue
                entry.claimed_at = time.monotonic()
                self._held[name] = entry
                self._successors[holder.name] = (entry, record)

    # -- internals (the caller holds ``self._lock``) ----------------------------------------

    def _add(self, delivery: Delivery, name: str, available_at: int) -> None:
        if name not in self._entries:
            entry = _Entry(delivery, name, available_at, _READY)
            self._entries[name] = entry
            self._enqueue(entry)

    def _enqueue(self, entry: _Entry) -> None:
        entry.state = _READY
        entry.seq = next(self._seq)
        heapq.heappush(self._ready, (entry.available_at, entry.seq, entry))
        self._wakeup.notify()

    def _peek_due(self, now: int) -> _Entry | None:
        """The soonest ready delivery if it is due (stale heap tuples dropped on the way)."""
        ready = self._ready
        while ready:
            available_at, seq, entry = ready[0]
            if (
                entry.state != _READY
                or entry.seq != seq
                or self._entries.get(entry.name) is not entry
            ):
                heapq.heappop(ready)
                continue
            return entry if available_at <= now else None
        return None

    def _pop_due(self, now: int) -> tuple[_Entry | None, float]:
        """Claim the soonest due delivery, or answer how long to wait (seconds) for one."""
        entry = self._peek_due(now)
        if entry is None:
            if not self._ready:
                return None, MAX_IDLE_WAIT_S
            return None, min(MAX_IDLE_WAIT_S, max(self._ready[0][0] - now, 1) / 1000)
        heapq.heappop(self._ready)
        entry.state = _CLAIMED
        entry.claimed_at = time.monotonic()
        self._held[entry.name] = entry
        return entry, 0.0

    def _rescan(self, *, synchronise: bool = False) -> None:
        """Read the table: pending deliveries not known yet join the queue (all of them the
        first time, then those due now); steps running past :attr:`slow_step_s` are logged.

        ``synchronise``: also forget queued deliveries due now that the table no longer has
        pending (acknowledged by another process), so that :meth:`drain` delivers exactly
        what the table holds.
        """
        if self._check_ownership():
            # It starts delivering (again): what it queued while another process delivered
            # may have been delivered since. The table says what is pending.
            for name, entry in list(self._entries.items()):
                if entry.state == _READY:
                    del self._entries[name]
            self._ready.clear()
            self._loaded = False
        now = self.clock()
        query = (
            "SELECT name, run_id, version, due_at, hop, available_at FROM deliveries "
            "WHERE state = 'pending'"
        )
        with self.db.reading() as connection:
            if not self._loaded:
                rows = connection.execute(query).fetchall()
            elif synchronise:
                rows = connection.execute(query + " AND available_at <= ?", (now,)).fetchall()
            else:
                rows = connection.execute(
                    query + " AND available_at <= ? ORDER BY available_at LIMIT ?",
                    (now, RESCAN_LIMIT),
                ).fetchall()
        if synchronise:
            pending = {row[0] for row in rows}
            for name, entry in list(self._entries.items()):
                if entry.state == _READY and entry.available_at <= now and name not in pending:
                    del self._entries[name]
        for name, run_id, version, due_at, hop, available_at in rows:
            self._add(Delivery(run_id, version, due_at, hop), name, available_at)
        slow = time.monotonic() - self.slow_step_s
        for entry in self._held.values():
            if entry.claimed_at < slow and not entry.slow:
                entry.slow = True
                logger.warning(
                    "the step of run %s v%s has run for over %g s; it goes on (not run again)",
                    entry.delivery.run_id,
                    entry.delivery.version,
                    self.slow_step_s,
                )
        self._loaded = True
        self._rescan_wanted = False
        self._next_rescan = time.monotonic() + RESCAN_EVERY_S

    def _check_ownership(self) -> bool:
        """At each rescan: a holder whose lock file was deleted locks a new one; one whose
        file another process locked first delivers nothing until it can lock it (that
        process is refused, the holder being recorded in the database); a scheduler in
        standby takes the right to deliver once its holder lets go. True when it starts
        delivering (again)."""
        ownership = self._ownership
        if self._stopping or not (ownership.held or self._threads):
            return False
        if ownership.held:
            held = ownership.still_held()
            if held != self._delivering:
                if held:
                    logger.warning(
                        "delivering again: the lock file %s is this process's", ownership.path
                    )
                else:
                    logger.error(
                        "the lock file %s was replaced and another process locked it: this "
                        "process delivers nothing until it can lock it again",
                        ownership.path,
                    )
                self._delivering = held
                return held
            return False
        try:
            ownership.acquire()
        except DatabaseInUse:
            return False
        logger.warning("delivering the steps of %s: the process that did stopped", self.db.path)
        self._delivering = True
        return True

    def _unknown_due(self) -> bool:
        """Whether the table has a pending delivery due now that is not known here."""
        with self.db.reading() as connection:
            rows = connection.execute(
                "SELECT name FROM deliveries WHERE state = 'pending' AND available_at <= ? LIMIT ?",
                (self.clock(), len(self._entries) + 1),
            ).fetchall()
        return any(row[0] not in self._entries for row in rows)

    # -- writes -------------------------------------------------------------------------------

    def _acknowledge(self, delivery: Delivery) -> None:
        with self.db.write() as connection:
            mark_done(connection, delivery.name, self.clock())

    def _retry_later(self, delivery: Delivery) -> int | None:
        """Record a failed attempt; returns when to deliver again (None: no longer pending)."""
        now = self.clock()
        with self.db.write() as connection:
            row = connection.execute(
                "SELECT attempts, state FROM deliveries WHERE name = ?", (delivery.name,)
            ).fetchone()
            if row is None or row[1] != "pending":
                return None
            attempts = row[0] + 1
            available_at = now + retry_backoff_ms(attempts)
            connection.execute(
                "UPDATE deliveries SET attempts = ?, available_at = ?, updated_at = ? "
                "WHERE name = ?",
                (attempts, available_at, now, delivery.name),
            )
        return available_at


def _told(error: BaseException) -> str:
    """An error as a log line may show it: a :class:`TransientError`'s own text (the
    store's or the scheduler's words), else only where it was raised: what user code
    raises (an error handler's, a globals provider's) may quote a secret, and logs are
    stored too."""
    return str(error) if isinstance(error, TransientError) else where_failed(error)
