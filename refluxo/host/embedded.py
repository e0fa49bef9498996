"""The embedded default: SQLite store + local scheduler + dispatcher, wired together."""

from __future__ import annotations

from pathlib import Path

from refluxo.backends.sqlite.db import DEFAULT_PATH, SqliteDatabase
from refluxo.backends.sqlite.scheduler import LocalScheduler
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.host.settings import DEFAULT_WORKERS
from refluxo.runtime.app import App
from refluxo.runtime.dispatcher import DeliveryResult, Dispatcher, StepBudget
from refluxo.runtime.ports import Delivery, RunRecord
from refluxo.runtime.service import RunService


class EmbeddedRuntime:
    """Everything needed to run an app on one machine, with no account and no server.

    Args:
        app: node types and workflows.
        path: the SQLite file (created if missing).
        workers: deliveries in progress at once, each on a background thread (``start()``);
            0 means deliver with ``drain()``. A delivery's thread drives its step (a
            ``def`` executor and the store calls run there; what awaits runs on the
            runtime's one event loop while the thread waits), so up to this many runs
            advance at once however long any of their steps takes.
        budget: steps a delivery may run before committing (default: one).
        outbox: record the next delivery in the commit's transaction (default). ``False``
            exercises the generic commit-then-schedule path that cloud backends use.
        synchronous: SQLite's durability mode; ``FULL`` survives power loss.
    """

    def __init__(
        self,
        app: App,
        path: str | Path = DEFAULT_PATH,
        *,
        workers: int = DEFAULT_WORKERS,
        budget: StepBudget | None = None,
        outbox: bool = True,
        synchronous: str = "FULL",
    ) -> None:
        self.app = app
        self.db = SqliteDatabase(path, synchronous=synchronous)
        self.scheduler = LocalScheduler(self.db, clock=app.clock, workers=workers)
        self.store = SqliteStore(
            self.db, outbox=self.scheduler.outbox if outbox else None, clock=app.clock
        )
        self.dispatcher = Dispatcher(app, self.store, self.scheduler, budget=budget)
        self.service = RunService(self.dispatcher)
        self.scheduler.handler = self.service.deliver
        self.scheduler.continuation = self._continue

    def _continue(self, delivery: Delivery, record: RunRecord) -> DeliveryResult:
        """Deliver the next delivery of a run whose commit returned ``record`` (no reload)."""
        return self.service.loop.run_in_place(self.dispatcher.deliver(delivery, record))

    def start(self, *, standby: bool = False) -> EmbeddedRuntime:
        """Start delivering in the background (the app's engines are built first).

        Raises :class:`~refluxo.backends.sqlite.errors.DatabaseInUse` if another process
        delivers this database's steps; with ``standby``, serve meanwhile and deliver once
        it stops (several workers of one server: one delivers at a time).
        """
        if self.scheduler.workers:
            self.app.warm_engines()
            self.scheduler.start(standby=standby)
        return self

    def stop(self) -> None:
        """Stop delivering: workers finish their step (one still awaiting after the event
        loop's grace period is cancelled and retried on the next start), then the database
        is closed."""
        self.scheduler.request_stop()
        self.service.close()  # after this, no worker waits on the loop
        self.scheduler.stop()
        self.db.close()

    def __enter__(self) -> EmbeddedRuntime:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
