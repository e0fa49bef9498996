"""Fault injection at scale on the embedded default: 1,000 runs, no anomaly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from refluxo.backends.sqlite.scheduler import LocalScheduler
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.dispatcher import Dispatcher
from refluxo.runtime.ports import Delivery
from tests.support.clock import FakeClock
from tests.support.faults import DEFAULT_RATES, FaultDriver, FaultPlan, build_fault_app


class SqliteQueue:
    """The local scheduler's table, read by the driver instead of worker threads."""

    def __init__(self, scheduler: LocalScheduler) -> None:
        self.scheduler = scheduler

    def due(self, now: int) -> list[Delivery]:
        rows = (
            self.scheduler.db.connection()
            .execute(
                "SELECT run_id, version, due_at, hop FROM deliveries "
                "WHERE state = 'pending' AND available_at <= ? ORDER BY available_at",
                (now,),
            )
            .fetchall()
        )
        return [Delivery(*row) for row in rows]

    def next_due_at(self) -> int | None:
        row = (
            self.scheduler.db.connection()
            .execute("SELECT min(available_at) FROM deliveries WHERE state = 'pending'")
            .fetchone()
        )
        return None if row[0] is None else int(row[0])

    def acknowledge(self, delivery: Delivery) -> None:
        self.scheduler.acknowledge(delivery)


@pytest.mark.parametrize("outbox", [False, True], ids=["commit-then-schedule", "outbox"])
def test_a_thousand_runs_under_faults_end_as_expected(
    tmp_path: Path, clock: FakeClock, outbox: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = 1000 if not outbox else 300
    app = build_fault_app(clock)
    path = tmp_path / "faults.db"
    runtime = EmbeddedRuntime(app, path, workers=0, outbox=outbox, synchronous="OFF")
    twin = EmbeddedRuntime(app, path, workers=0, outbox=outbox, synchronous="OFF")
    try:
        driver = FaultDriver(
            app=app,
            clock=clock,
            store=runtime.store,
            scheduler=runtime.scheduler,
            queue=SqliteQueue(runtime.scheduler),
            # late_resume is drawn only once a pause was answered: raised so that the
            # smaller outbox run meets it too, whatever the order of the threads.
            plan=FaultPlan(random.Random(1234), {**DEFAULT_RATES, "late_resume": 0.1}),
            second_dispatcher=lambda: Dispatcher(app, twin.store, twin.scheduler),
        )
        report = driver.run(runs)
    finally:
        twin.stop()
        runtime.stop()
    with capsys.disabled():
        print(
            f"\n[fault injection, embedded, {'outbox' if outbox else 'no outbox'}] "
            f"{report.render()}"
        )
    assert report.anomalies == [], report.anomalies[:10]
    assert report.runs == runs
    expected_kinds = {
        "duplicate_delivery",
        "concurrent_delivery",
        "late_delivery",
        "out_of_order",
        "scheduling_failure",
        "store_failure_before_commit",
        "store_reply_lost_after_commit",
        "duplicate_resume",
        "late_resume",
    }
    if not outbox:
        expected_kinds |= {"crash_between_commit_and_schedule", "duplicate_schedule"}
    assert expected_kinds <= {kind for kind, count in report.faults.items() if count > 0}
    assert report.outcomes.get("stale", 0) > 0
    assert report.outcomes.get("map_cancelled_while_waiting", 0) > 0
    assert report.outcomes.get("children", 0) > 0
    assert (
        report.outcomes.get("concurrent_lost_race", 0) + report.outcomes.get("concurrent_stale", 0)
        > 0
    )
