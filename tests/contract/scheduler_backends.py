"""Every Scheduler backend, behind one harness the scheduler contract is written against.

A harness schedules through the real scheduler and observes what reaches the handler: an
:class:`Arrival` per attempt, with the time it arrived and the name the transport carried.
Two kinds of time:

* :class:`VirtualTime` (memory, SQLite, Cloud Tasks on the fake client): the clock is a
  ``FakeClock``; "time passes" means moving it to the next due time and delivering what is
  due, in the test's thread. A 90-day delay takes no longer than a 1-second one.
* :class:`EmulatorTime` (Cloud Tasks on the emulator): wall-clock time; the emulator POSTs
  to a receiver on 127.0.0.1, and the harness waits on a condition with a deadline.

Adding a backend: write a builder (a context manager taking the pytest request) and add
it to :data:`SCHEDULERS` (and to :data:`FALLIBLE_SCHEDULERS` if it does I/O); every
contract test then runs against it.
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from refluxo.runtime.ports import Delivery, Scheduler
from tests.contract.store_backends import SQLITE_TIMEOUT_S, write_lock_held
from tests.support.clock import FakeClock
from tests.support.emulators import free_port

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MAX_STEPS = 10_000
"""Bound on a virtual-time loop: a scheduler that never settles fails instead of hanging."""


@dataclass(frozen=True)
class Arrival:
    """One attempt at a delivery, as the handler saw it."""

    delivery: Delivery
    at: int
    """The harness clock (epoch ms) when the attempt reached the handler."""
    name: str
    """The name the transport delivered it under (a Cloud Tasks task id, else ``name``)."""


class SchedulerUnderTest(abc.ABC):
    """A scheduler wired to a recording handler, and how its time passes.

    Attributes:
        scheduler: The scheduler under test.
        deduplicates: ``False`` only where the transport is kinder than its service (the
            Cloud Tasks emulator accepts a task name twice; the service refuses it, which
            the fake client models): there, copies of one delivery are checked to carry
            one name instead of being counted.
        unavailable: While entered, scheduling fails for a reason that passes (a busy
            database, an unreachable service); ``None``: the scheduler does no I/O.
        max_delay_ms: The furthest ahead the scheduler schedules one delivery; a longer
            delay arrives early and is chained by the next hop. ``None``: no limit.
        near_ms: A delay within ``max_delay_ms`` (real time on the emulator: keep short).
        far_ms: A delay beyond ``max_delay_ms`` where there is one.
        settle_ms: How long to watch for a delivery that must not come.
    """

    scheduler: Scheduler
    unavailable: Callable[[], AbstractContextManager[None]] | None = None
    deduplicates: bool = True
    max_delay_ms: int | None = None
    near_ms: int = 10 * 60_000
    far_ms: int = 90 * DAY_MS
    settle_ms: int = 2 * HOUR_MS

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    @abc.abstractmethod
    def now(self) -> int: ...

    @abc.abstractmethod
    def pass_time_to(self, at: int) -> list[Arrival]:
        """Let the clock reach ``at``; every arrival so far."""

    @abc.abstractmethod
    def wait_for(self, count: int) -> list[Arrival]:
        """Let time pass until at least ``count`` attempts arrived; every arrival so far."""

    def fail_next(self, delivery: Delivery, times: int = 1) -> None:
        """The handler fails the next ``times`` attempts at ``delivery``."""
        with self._lock:
            self._failures[delivery.name] = times

    def _arrive(self, delivery: Delivery, name: str) -> bool:
        """Record an attempt; False if the handler fails it."""
        with self._lock:
            self.arrivals.append(Arrival(delivery, self.now(), name))
            remaining = self._failures.get(delivery.name, 0)
            if remaining:
                self._failures[delivery.name] = remaining - 1
            return not remaining


class HandlerFailed(Exception):
    """The handler's answer when a test asked it to fail (a 5xx, for a queue)."""


class VirtualTime(SchedulerUnderTest):
    """A scheduler on a fake clock, delivered synchronously by ``run_due``.

    Args:
        run_due: Hands every delivery due now to the handler (the backend's drain).
        next_due: When the next attempt is due, or ``None`` if nothing is pending.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        clock: FakeClock,
        run_due: Callable[[], object],
        next_due: Callable[[], int | None],
        *,
        max_delay_ms: int | None = None,
    ) -> None:
        super().__init__()
        self.scheduler = scheduler
        self.clock = clock
        self.max_delay_ms = max_delay_ms
        self._run_due = run_due
        self._next_due = next_due

    def now(self) -> int:
        return self.clock.now

    def handle(self, delivery: Delivery, name: str | None = None) -> None:
        if not self._arrive(delivery, delivery.name if name is None else name):
            raise HandlerFailed(f"told to fail {delivery}")

    def pass_time_to(self, at: int) -> list[Arrival]:
        self._run_due()
        for _ in range(MAX_STEPS):
            upcoming = self._next_due()
            if upcoming is None or upcoming > at:
                self.clock.now = max(self.clock.now, at)
                self._run_due()
                return list(self.arrivals)
            self.clock.now = max(self.clock.now, upcoming)
            self._run_due()
        raise AssertionError(f"deliveries did not settle in {MAX_STEPS} steps")

    def wait_for(self, count: int) -> list[Arrival]:
        self._run_due()
        for _ in range(MAX_STEPS):
            if len(self.arrivals) >= count:
                return list(self.arrivals)
            upcoming = self._next_due()
            if upcoming is None:
                raise AssertionError(
                    f"{count} attempts expected, {len(self.arrivals)} arrived "
                    f"({self.arrivals}), and nothing is pending"
                )
            self.clock.now = max(self.clock.now, upcoming)
            self._run_due()
        raise AssertionError(f"{count} attempts expected, {len(self.arrivals)} arrived")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def delivery_of(body: bytes) -> Delivery:
    """The delivery a Cloud Tasks task's JSON body describes (what the step handler reads)."""
    fields = json.loads(body)
    return Delivery(fields["runId"], fields["version"], fields["dueAt"], fields["hop"])


class EmulatorTime(SchedulerUnderTest):
    """Cloud Tasks on the emulator: tasks POSTed to a receiver, in wall-clock time.

    ``deduplicates`` is False: the emulator accepts a task name twice and delivers both
    (the service answers ALREADY_EXISTS). The scheduler is built with a 1-second maximum
    delay so that a delay past the maximum is chained through the real emulator in
    seconds; the 30-day limit itself is the fake client's to enforce.
    """

    deduplicates = False
    max_delay_ms = 1_000
    near_ms = 600
    far_ms = 2_500
    settle_ms = 1_000
    timeout_s = 15.0

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()
        harness = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                name = self.headers.get("X-CloudTasks-TaskName", "")
                ok = harness._arrive(delivery_of(body), name)
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with harness._changed:
                    harness._changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/tasks/step"

    def now(self) -> int:
        return wall_clock_ms()

    def pass_time_to(self, at: int) -> list[Arrival]:
        with self._changed:
            while (remaining := at - self.now()) > 0:
                self._changed.wait(remaining / 1000)
            return list(self.arrivals)

    def wait_for(self, count: int) -> list[Arrival]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.arrivals) >= count, self.timeout_s):
                raise AssertionError(
                    f"{count} attempts expected within {self.timeout_s} s, "
                    f"{len(self.arrivals)} arrived: {self.arrivals}"
                )
            return list(self.arrivals)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- the backends -------------------------------------------------------------------------------


@contextmanager
def memory(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    from refluxo.backends.memory import MemoryScheduler

    clock: FakeClock = request.getfixturevalue("clock")
    scheduler = MemoryScheduler()
    harness: VirtualTime

    def run_due() -> None:
        scheduler.drain(harness.handle, clock)

    harness = VirtualTime(scheduler, clock, run_due, scheduler.next_due_at)
    yield harness


@contextmanager
def sqlite(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    from refluxo.backends.sqlite.db import SqliteDatabase
    from refluxo.backends.sqlite.scheduler import LocalScheduler

    clock: FakeClock = request.getfixturevalue("clock")
    path = request.getfixturevalue("tmp_path") / "scheduler.db"
    db = SqliteDatabase(path, synchronous="OFF", timeout=SQLITE_TIMEOUT_S)
    scheduler = LocalScheduler(db, clock=clock, workers=0)

    def next_due() -> int | None:
        row = (
            db.connection()
            .execute("SELECT min(available_at) FROM deliveries WHERE state = 'pending'")
            .fetchone()
        )
        return None if row[0] is None else int(row[0])

    harness = VirtualTime(scheduler, clock, scheduler.drain, next_due)
    harness.unavailable = lambda: write_lock_held(path)
    scheduler.handler = harness.handle
    try:
        yield harness
    finally:
        db.close()


FAKE_QUEUE = "projects/demo-test/locations/here/queues/contract"


@contextmanager
def cloud_tasks_fake(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    """Cloud Tasks as documented (names refused for an hour, 30-day limit), on a fake clock."""
    from google.cloud import tasks_v2

    from refluxo.backends.gcp.cloud_tasks import DEFAULT_MAX_DELAY_MS, CloudTasksScheduler
    from tests.support.fake_cloud_tasks import FakeCloudTasks

    clock: FakeClock = request.getfixturevalue("clock")
    service = FakeCloudTasks(FAKE_QUEUE, clock)
    scheduler = CloudTasksScheduler(
        service, queue_path=FAKE_QUEUE, url="https://run.example/tasks/step", clock=clock
    )
    harness: VirtualTime

    def post(task: tasks_v2.Task) -> None:
        harness.handle(delivery_of(task.http_request.body), task.name.rsplit("/", 1)[-1])

    def run_due() -> None:
        service.dispatch_due(post)

    harness = VirtualTime(
        scheduler, clock, run_due, service.next_dispatch_at, max_delay_ms=DEFAULT_MAX_DELAY_MS
    )

    @contextmanager
    def outage() -> Iterator[None]:
        service.unavailable = True
        try:
            yield
        finally:
            service.unavailable = False

    harness.unavailable = outage
    yield harness


@contextmanager
def cloud_tasks_emulator(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator

    emulator = request.getfixturevalue("tasks_emulator")
    harness = EmulatorTime()
    try:
        with tasks_client_for_emulator(emulator.host_port) as client:
            scheduler = CloudTasksScheduler(
                client,
                queue_path=emulator.queue_path,
                url=harness.url,
                max_delay_ms=EmulatorTime.max_delay_ms,
            )

            @contextmanager
            def unreachable() -> Iterator[None]:
                """The client's connection goes to a port where nothing listens."""
                with tasks_client_for_emulator(f"127.0.0.1:{free_port()}") as nowhere:
                    scheduler.client = nowhere
                    try:
                        yield
                    finally:
                        scheduler.client = client

            harness.scheduler = scheduler
            harness.unavailable = unreachable
            yield harness
    finally:
        harness.close()


SCHEDULERS: dict[
    str, Callable[[pytest.FixtureRequest], AbstractContextManager[SchedulerUnderTest]]
] = {
    "memory": memory,
    "sqlite": sqlite,
    "cloud-tasks-fake": cloud_tasks_fake,
    "cloud-tasks-emulator": cloud_tasks_emulator,
}
"""The schedulers the contract runs against, by fixture id."""

FALLIBLE_SCHEDULERS = ["sqlite", "cloud-tasks-fake", "cloud-tasks-emulator"]
"""The schedulers that do I/O, whose builders give an ``unavailable`` hook."""
