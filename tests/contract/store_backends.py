"""Every SnapshotStore backend, as the store contract sees it.

A :class:`StoreUnderTest` is a store plus, where the composition root pairs it with a
scheduler's transactional outbox, a way to read what that scheduler has pending: the
contract checks that a store answering ``scheduled=True`` really recorded the delivery,
and that one without an outbox never claims to have. A store that does I/O also gives a
way to make its writes fail for a while, as a busy or unreachable database does.

Adding a backend: write a builder (a context manager taking the pytest request) and add
it to :data:`STORES` (and to :data:`FALLIBLE_STORES` if it does I/O); every contract test
then runs against it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from refluxo.runtime.ports import Delivery, SnapshotStore
from tests.support.clock import FakeClock
from tests.support.google_errors import google_error

SQLITE_TIMEOUT_S = 0.25
"""How long the SQLite stores here wait for the write lock (30 s by default)."""


@dataclass(frozen=True)
class StoreUnderTest:
    """A store, and the pending deliveries of the scheduler it records deliveries for."""

    store: SnapshotStore
    clock: FakeClock
    outbox: Callable[[], list[Delivery]] | None = None
    """The paired scheduler's pending deliveries; ``None`` for a store without an outbox."""
    unavailable: Callable[[], AbstractContextManager[None]] | None = None
    """While entered, the store's writes fail for a reason that passes; ``None``: the store
    does no I/O that can fail so."""


@contextmanager
def memory(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    from refluxo.backends.memory import MemoryStore

    clock: FakeClock = request.getfixturevalue("clock")
    yield StoreUnderTest(MemoryStore(clock=clock), clock)


@contextmanager
def sqlite(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    from refluxo.backends.sqlite.db import SqliteDatabase
    from refluxo.backends.sqlite.store import SqliteStore

    clock: FakeClock = request.getfixturevalue("clock")
    path = request.getfixturevalue("tmp_path") / "store.db"
    db = SqliteDatabase(path, synchronous="OFF", timeout=SQLITE_TIMEOUT_S)
    try:
        yield StoreUnderTest(
            SqliteStore(db, clock=clock), clock, unavailable=lambda: write_lock_held(path)
        )
    finally:
        db.close()


@contextmanager
def sqlite_outbox(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    """The embedded pairing: the store records deliveries in its LocalScheduler's table."""
    from refluxo.backends.sqlite.db import SqliteDatabase
    from refluxo.backends.sqlite.scheduler import LocalScheduler
    from refluxo.backends.sqlite.store import SqliteStore

    clock: FakeClock = request.getfixturevalue("clock")
    path = request.getfixturevalue("tmp_path") / "store.db"
    db = SqliteDatabase(path, synchronous="OFF", timeout=SQLITE_TIMEOUT_S)
    scheduler = LocalScheduler(db, clock=clock, workers=0)
    try:
        store = SqliteStore(db, outbox=scheduler.outbox, clock=clock)
        yield StoreUnderTest(
            store,
            clock,
            outbox=scheduler.pending,
            unavailable=lambda: write_lock_held(path),
        )
    finally:
        db.close()


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds the database's write lock for longer than the store waits."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


@contextmanager
def firestore(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    """The Firestore emulator, each test in collections of its own (a unique prefix)."""
    from refluxo.backends.gcp.firestore import FirestoreStore

    clock: FakeClock = request.getfixturevalue("clock")
    client = FlakyFirestore(request.getfixturevalue("firestore_client"))
    prefix: str = request.getfixturevalue("firestore_prefix")
    # A stand-in for the client: FirestoreStore is typed for the real one.
    store = FirestoreStore(
        cast(Any, client), prefix=prefix, clock=clock, max_attempts=3, sleep=_no_wait
    )
    yield StoreUnderTest(store, clock, unavailable=client.down)


def _no_wait(seconds: float) -> None:
    """The store's backoff between its own attempts: nothing to wait for here."""


class FlakyFirestore:
    """A ``firestore.Client`` whose commits answer ``ServiceUnavailable`` while it is down.

    Reads still reach the emulator, as when Firestore refuses writes for a while.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @contextmanager
    def down(self) -> Iterator[None]:
        self._down = True
        try:
            yield
        finally:
            self._down = False

    def batch(self) -> Any:
        batch = self._client.batch()
        batch.commit = self._guarded(batch.commit)
        return batch

    def _guarded(self, commit: Callable[..., Any]) -> Callable[..., Any]:
        from google.api_core import exceptions

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self._down:
                raise google_error(exceptions.ServiceUnavailable, "Firestore is unavailable")
            return commit(*args, **kwargs)

        return guarded


STORES: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[StoreUnderTest]]] = {
    "memory": memory,
    "sqlite": sqlite,
    "sqlite+outbox": sqlite_outbox,
    "firestore": firestore,
}
"""The stores the contract runs against, by fixture id."""

FALLIBLE_STORES = ["sqlite", "sqlite+outbox", "firestore"]
"""The stores that do I/O, whose builders give an ``unavailable`` hook."""
