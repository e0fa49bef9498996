"""The in-memory :class:`~refluxo.runtime.ports.Scheduler`: pending deliveries in a dict.

Nothing runs in the background. Whoever owns the scheduler delivers: with :meth:`drain`
(every delivery due now, in the calling thread), or with :meth:`due` and
:meth:`acknowledge` (a driver that chooses order, timing and duplicates itself, as the
fault-injection tests do). Time stays in the caller's hands: with a fake clock a 90-day
timer is delivered by moving the clock, not by waiting.

The contract, stated plainly:

* Idempotent by name: a delivery whose :attr:`~refluxo.runtime.ports.Delivery.name` is
  pending, or was delivered, is not added again. Delivered names are remembered for the
  life of the scheduler, the strongest form of the port's "or was recently delivered"
  (Cloud Tasks forgets a name after about an hour, the SQLite scheduler when it purges;
  a duplicate after that is harmless, as the dispatcher finds its version stale).
* Never early: a delivery is due once ``now >= due_at``. There is no maximum delay, so no
  delivery ever arrives early to be chained into a next hop.
* At least once: a delivery stays pending until acknowledged. A handler that raises
  leaves it pending, due again ``retry_backoff_ms`` later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from refluxo.errors import where_failed
from refluxo.runtime.ports import Delivery

logger = logging.getLogger("refluxo.scheduler")

Handler = Callable[[Delivery], object]
"""Executes one delivery; returning acknowledges it, raising leaves it pending."""


@dataclass(slots=True)
class _Pending:
    delivery: Delivery
    available_at: int
    """``due_at``, or later after a failed attempt."""


class MemoryScheduler:
    """Deliveries pending until acknowledged, delivered by :meth:`drain` or by a driver.

    Args:
        retry_backoff_ms: How long after a failed attempt :meth:`drain` tries again.
    """

    def __init__(self, *, retry_backoff_ms: int = 1_000) -> None:
        if retry_backoff_ms <= 0:
            raise ValueError("retry_backoff_ms must be positive")
        self.retry_backoff_ms = retry_backoff_ms
        self.failures = 0
        """Handler calls of :meth:`drain` that raised."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._woken = False
        self._pending: dict[str, _Pending] = {}
        self._delivered: set[str] = set()

    # -- the Scheduler protocol ---------------------------------------------------------

    def schedule(self, delivery: Delivery) -> None:
        """Add ``delivery`` unless its name is pending or was delivered."""
        with self._lock:
            name = delivery.name
            if name not in self._pending and name not in self._delivered:
                self._pending[name] = _Pending(delivery, delivery.due_at)
                self._changed.notify_all()

    # -- delivering -------------------------------------------------------------------------

    def due(self, now: int) -> list[Delivery]:
        """Pending deliveries due at ``now``, soonest first; they stay pending."""
        with self._lock:
            ready = [entry for entry in self._pending.values() if entry.available_at <= now]
        ready.sort(key=lambda entry: entry.available_at)  # stable: in scheduling order
        return [entry.delivery for entry in ready]

    def next_due_at(self) -> int | None:
        """When the soonest pending delivery is due, or ``None`` if nothing is pending."""
        with self._lock:
            return min((entry.available_at for entry in self._pending.values()), default=None)

    def pending(self) -> list[Delivery]:
        """Every delivery not yet acknowledged, soonest first."""
        with self._lock:
            entries = sorted(self._pending.values(), key=lambda entry: entry.available_at)
        return [entry.delivery for entry in entries]

    def acknowledge(self, delivery: Delivery) -> None:
        """``delivery`` was delivered: forget it, and never add its name again."""
        with self._lock:
            self._pending.pop(delivery.name, None)
            self._delivered.add(delivery.name)

    def retry_later(self, delivery: Delivery, at: int) -> None:
        """An attempt at ``delivery`` failed: it is due again at ``at`` (if still pending)."""
        with self._lock:
            entry = self._pending.get(delivery.name)
            if entry is not None:
                entry.available_at = at

    def wait(self, clock: Callable[[], int], timeout_s: float) -> None:
        """Block until a delivery is due at ``clock()``, one is scheduled, or :meth:`wake`.

        At most ``timeout_s`` seconds, so that a clock that jumps (or a fake one) is
        noticed: a background deliverer loops on :meth:`drain` and this.
        """
        with self._changed:
            if self._woken:
                self._woken = False
                return
            upcoming = min((entry.available_at for entry in self._pending.values()), default=None)
            if upcoming is not None:
                timeout_s = min(timeout_s, (upcoming - clock()) / 1000)
            if timeout_s > 0:
                self._changed.wait(timeout_s)
            self._woken = False

    def wake(self) -> None:
        """End the current (or the next) :meth:`wait` now."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def drain(self, handler: Handler, clock: Callable[[], int], *, limit: int | None = None) -> int:
        """Hand every delivery due at ``clock()`` to ``handler``, in this thread.

        Deliveries the handler makes due (it schedules the next step) are delivered too.
        A handler that returns acknowledges its delivery; one that raises leaves it pending
        until ``retry_backoff_ms`` later (logged, and counted in :attr:`failures`). Returns
        how many handler calls were made; ``limit`` bounds them.
        """
        calls = 0
        while limit is None or calls < limit:
            ready = self.due(clock())
            if not ready:
                break
            for delivery in ready[: None if limit is None else limit - calls]:
                calls += 1
                try:
                    handler(delivery)
                except Exception as err:
                    self.failures += 1
                    logger.error(  # where, not what: the text may quote a secret
                        "delivery of run %s v%s failed: %s; will retry",
                        delivery.run_id,
                        delivery.version,
                        where_failed(err),
                    )
                    self.retry_later(delivery, clock() + self.retry_backoff_ms)
                else:
                    self.acknowledge(delivery)
        return calls


__all__ = ["Handler", "MemoryScheduler"]
