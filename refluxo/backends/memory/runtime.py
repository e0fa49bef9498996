"""The memory backend as a runtime: store, scheduler, dispatcher and one delivery thread.

What the composition root registers as the ``memory`` backend: the same dispatcher and
service as every other backend, with nothing durable under them. Runs live in this
process and vanish with it, which suits tests, demos and workflows whose results are
consumed before the process ends.

Deliveries are made in-process, either by :meth:`MemoryRuntime.drain` in the caller's
thread (tests on a fake clock) or, once started, by one background thread that sleeps
until the next delivery is due or one is scheduled.
"""

from __future__ import annotations

import threading

from refluxo.backends.memory.scheduler import MemoryScheduler
from refluxo.backends.memory.store import MemoryStore
from refluxo.runtime.app import App
from refluxo.runtime.dispatcher import Dispatcher, StepBudget
from refluxo.runtime.service import RunService

MAX_IDLE_WAIT_S = 1.0
"""Longest sleep of the delivery thread, so that a clock that jumps is noticed."""

DRAIN_BATCH = 32
"""Deliveries the background thread makes before it looks at :meth:`MemoryRuntime.stop`."""


class MemoryRuntime:
    """Everything needed to run an app in memory; ``start()`` delivers in the background.

    Args:
        app: Node types and workflows; its clock times every commit and delivery.
        budget: Steps a delivery may run before committing (default: one).
        retry_backoff_ms: Delay before a failed delivery is tried again.
    """

    def __init__(
        self, app: App, *, budget: StepBudget | None = None, retry_backoff_ms: int = 1_000
    ) -> None:
        self.app = app
        self.store = MemoryStore(clock=app.clock)
        self.scheduler = MemoryScheduler(retry_backoff_ms=retry_backoff_ms)
        self.dispatcher = Dispatcher(app, self.store, self.scheduler, budget=budget)
        self.service = RunService(self.dispatcher)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def drain(self) -> int:
        """Deliver, in this thread, every delivery due now and those they make due.

        For tests and scripts that keep time themselves; not alongside :meth:`start`.
        Returns how many deliveries were attempted.
        """
        return self.scheduler.drain(self.service.deliver, self.app.clock)

    def start(self) -> MemoryRuntime:
        """Deliver in a background thread as deliveries fall due (idempotent)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._deliver_until_stopped, name="refluxo-memory", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the delivery thread after its current delivery, and the service."""
        self._stopping.set()
        self.scheduler.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.service.close()

    def __enter__(self) -> MemoryRuntime:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _deliver_until_stopped(self) -> None:
        deliver, clock = self.service.deliver, self.app.clock
        while not self._stopping.is_set():
            # In batches, so that stop() is noticed between them however busy the runs.
            if self.scheduler.drain(deliver, clock, limit=DRAIN_BATCH) < DRAIN_BATCH:
                self.scheduler.wait(clock, MAX_IDLE_WAIT_S)


__all__ = ["MemoryRuntime"]
