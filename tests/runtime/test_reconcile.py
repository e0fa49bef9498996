"""The reconciler: a run whose delivery was lost is scheduled again once it is overdue by
more than the grace period, and nothing else is touched.

On the memory backend with a scheduler that loses deliveries on demand (a scheduler that is
not transactional with the store, as Cloud Tasks is not with Firestore), on a fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from refluxo.backends.memory import MemoryScheduler, MemoryStore
from refluxo.errors import TransientError
from refluxo.model import SnapshotStatus
from refluxo.runtime import App, Delivery, Dispatcher, RunPage, RunService
from refluxo.runtime.errors import BadRequest
from refluxo.runtime.events_log import EVENT_FIELD
from refluxo.runtime.service import (
    DEFAULT_RECONCILE_GRACE_MS,
    RECONCILE_EMPTY_PAGES,
    ReconcileReport,
)
from tests.support.apps import build_app
from tests.support.clock import FakeClock

GRACE_MS = 600_000


class LosingScheduler(MemoryScheduler):
    """A memory scheduler whose ``schedule`` fails (as a 503 would) while ``losing``."""

    def __init__(self) -> None:
        super().__init__()
        self.losing = False
        self.asked: list[Delivery] = []

    def schedule(self, delivery: Delivery) -> None:
        self.asked.append(delivery)
        if self.losing:
            raise TransientError("503 from the scheduler")
        super().schedule(delivery)


class Harness:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.app: App = build_app(clock)
        self.store = MemoryStore(clock=clock)
        self.scheduler = LosingScheduler()
        self.service = RunService(Dispatcher(self.app, self.store, self.scheduler))

    def start_lost(self, workflow: str, run_id: str) -> None:
        """Start a run whose first delivery is lost: the caller sees the failure."""
        self.scheduler.losing = True
        with pytest.raises(TransientError):
            self.service.start(workflow, None, run_id=run_id)
        self.scheduler.losing = False

    def drain(self) -> int:
        return self.scheduler.drain(self.service.deliver, self.clock)

    def status(self, run_id: str) -> SnapshotStatus:
        return self.service.get(run_id).status


@pytest.fixture
def harness(clock: FakeClock) -> Iterator[Harness]:
    built = Harness(clock)
    yield built
    built.service.close()


def stalled_events(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        getattr(record, EVENT_FIELD)
        for record in caplog.records
        if getattr(record, EVENT_FIELD, {}).get("event") == "run_stalled"
    ]


def test_a_lost_start_is_scheduled_again_after_the_grace_period(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.start_lost("chain", "lost-1")
    assert harness.scheduler.pending() == []
    assert harness.status("lost-1") == SnapshotStatus.ACTIVE

    harness.clock.advance(GRACE_MS - 1)
    with caplog.at_level(logging.WARNING, logger="refluxo.events"):
        early = harness.service.reconcile(grace_ms=GRACE_MS)
    assert early == ReconcileReport(examined=0, rescheduled=0, next_cursor=None)
    assert harness.scheduler.pending() == []
    assert stalled_events(caplog) == []

    harness.clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="refluxo.events"):
        report = harness.service.reconcile(grace_ms=GRACE_MS)
    assert report == ReconcileReport(examined=1, rescheduled=1, next_cursor=None)
    assert harness.scheduler.pending() == [Delivery("lost-1", 0, 0)]
    (event,) = stalled_events(caplog)
    assert event["runId"] == "lost-1"
    assert event["workflow"] == "chain"
    assert event["version"] == 0
    assert event["overdueMs"] == GRACE_MS
    (record,) = [r for r in caplog.records if getattr(r, EVENT_FIELD, None) == event]
    assert record.levelno == logging.WARNING

    harness.drain()
    assert harness.status("lost-1") == SnapshotStatus.COMPLETED


def test_runs_with_their_delivery_are_not_overdue_until_it_is_late(harness: Harness) -> None:
    started = harness.service.start("chain", None, run_id="fine").record
    assert started.status == SnapshotStatus.ACTIVE
    asked = len(harness.scheduler.asked)
    assert harness.service.reconcile(grace_ms=GRACE_MS).examined == 0
    harness.drain()
    assert harness.status("fine") == SnapshotStatus.COMPLETED
    harness.clock.advance(10 * GRACE_MS)
    assert harness.service.reconcile(grace_ms=GRACE_MS) == ReconcileReport(0, 0, None)
    assert len(harness.scheduler.asked) == asked + 4  # the run's own steps, nothing more


def test_a_caller_paused_run_is_never_overdue(harness: Harness) -> None:
    harness.service.start("approval", None, run_id="waiting")
    harness.drain()
    assert harness.status("waiting") == SnapshotStatus.PAUSED
    harness.clock.advance(100 * GRACE_MS)
    assert harness.service.reconcile(grace_ms=0).examined == 0


def test_a_lost_retry_is_overdue_from_its_retry_time(harness: Harness) -> None:
    harness.service.start("flaky", None, run_id="retrying")
    (first,) = harness.scheduler.pending()
    harness.scheduler.losing = True
    with pytest.raises(TransientError):  # the first attempt fails; its retry is lost
        harness.service.deliver(first)
    harness.scheduler.losing = False
    harness.scheduler.acknowledge(first)  # and the queue gave up on the first delivery
    record = harness.service.get("retrying")
    assert record.status == SnapshotStatus.ERROR
    assert record.snapshot.retry_state is not None
    retry_at = int(record.snapshot.retry_state.next_retry_at or 0)
    assert retry_at > harness.clock()

    harness.clock.now = retry_at + GRACE_MS - 1
    assert harness.service.reconcile(grace_ms=GRACE_MS).rescheduled == 0
    harness.clock.now = retry_at + GRACE_MS
    assert harness.service.reconcile(grace_ms=GRACE_MS).rescheduled == 1
    for _ in range(5):
        harness.drain()
        harness.clock.advance(5_000)
    assert harness.status("retrying") == SnapshotStatus.COMPLETED


def test_a_pass_is_bounded_by_its_limit_and_continues_from_its_cursor(harness: Harness) -> None:
    for index in range(7):
        harness.start_lost("chain", f"lost-{index}")
        harness.clock.advance(1)
    harness.clock.advance(GRACE_MS)
    rescheduled: list[str] = []
    cursor: str | None = None
    reports = []
    while True:
        before = {d.run_id for d in harness.scheduler.pending()}
        report = harness.service.reconcile(grace_ms=GRACE_MS, limit=3, cursor=cursor)
        reports.append((report.examined, report.rescheduled))
        rescheduled += sorted({d.run_id for d in harness.scheduler.pending()} - before)
        cursor = report.next_cursor
        if cursor is None:
            break
    assert reports == [(3, 3), (3, 3), (1, 1)]
    assert rescheduled == [f"lost-{index}" for index in range(7)]  # each once, oldest first
    harness.drain()
    assert all(harness.status(f"lost-{i}") == SnapshotStatus.COMPLETED for i in range(7))


def test_the_head_decides_not_the_stores_copy(harness: Harness) -> None:
    """A store indexing a coarser copy of the time may return a run expected a little
    later: it is examined, not scheduled."""
    harness.start_lost("chain", "overdue")
    harness.clock.advance(GRACE_MS)
    harness.start_lost("chain", "not-yet")  # expected now, not overdue by the grace
    real = harness.store.overdue_runs

    def coarse(expected_before: int, *, limit: int = 100, cursor: str | None = None) -> RunPage:
        page = real(expected_before + GRACE_MS, limit=limit, cursor=cursor)
        return page

    harness.store.overdue_runs = coarse  # type: ignore[method-assign]
    report = harness.service.reconcile(grace_ms=GRACE_MS)
    assert report == ReconcileReport(examined=2, rescheduled=1, next_cursor=None)
    assert [d.run_id for d in harness.scheduler.pending()] == ["overdue"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"grace_ms": -1}, "grace"),
        ({"grace_ms": 0, "limit": 0}, "limit"),
        ({"grace_ms": 0, "cursor": "not a cursor"}, "cursor"),
    ],
)
def test_malformed_arguments_are_bad_requests(
    harness: Harness, arguments: dict[str, Any], fragment: str
) -> None:
    harness.start_lost("chain", "lost")
    with pytest.raises(BadRequest, match=fragment):
        harness.service.reconcile(**arguments)
    assert harness.scheduler.pending() == []


def test_the_default_grace_period_is_ten_minutes(clock: FakeClock) -> None:
    service = RunService(Dispatcher(build_app(clock), MemoryStore(clock=clock), MemoryScheduler()))
    assert service.reconcile_grace_ms == DEFAULT_RECONCILE_GRACE_MS == 600_000
    service.close()


def test_empty_pages_are_read_past_but_bound_the_call(harness: Harness) -> None:
    """A store indexing a coarser copy may answer a page of no overdue run, with a cursor:
    the pass reads on, up to a bound, then answers the cursor to continue from."""
    harness.start_lost("chain", "overdue")
    harness.clock.advance(GRACE_MS)
    real = harness.store.overdue_runs
    empties = {"left": 3}

    def sparse(expected_before: int, *, limit: int = 100, cursor: str | None = None) -> RunPage:
        if empties["left"]:
            empties["left"] -= 1
            return RunPage([], cursor or "start")
        return real(expected_before, limit=limit, cursor=None if cursor == "start" else cursor)

    harness.store.overdue_runs = sparse  # type: ignore[method-assign]
    assert harness.service.reconcile(grace_ms=GRACE_MS) == ReconcileReport(1, 1, None)

    empties["left"] = RECONCILE_EMPTY_PAGES + 5
    stopped = harness.service.reconcile(grace_ms=GRACE_MS)
    assert stopped == ReconcileReport(0, 0, "start")
    assert empties["left"] == 5
