"""The dispatcher's promises on the embedded default.

Duplicate and concurrent deliveries, a crash between commit and schedule, a scheduler
restart, retries at their time, resume, and a definition changed mid-run. After each: no
lost run, no step committed twice, the final snapshot as expected.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from refluxo import StepResult
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App, Outcome
from refluxo.runtime.ports import Delivery
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.stores import assert_history_consistent, history_of

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_goes_step_by_step_one_commit_per_delivery(runtime: EmbeddedRuntime) -> None:
    run = runtime.service.start("chain", {"x": 1}).record
    assert runtime.scheduler.drain() == 5  # one delivery per node
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    assert record.status == "completed"
    assert record.version == 5
    assert assert_history_consistent(runtime.store, run.run_id) == ["n0", "n1", "n2", "n3", "n4"]
    assert runtime.scheduler.pending() == []


def test_duplicate_delivery_commits_nothing(runtime: EmbeddedRuntime) -> None:
    run = runtime.service.start("chain").record
    runtime.scheduler.drain(limit=2)
    before = runtime.store.load_run(run.run_id)
    assert before is not None
    assert before.version == 2

    for version in (0, 1, 0, 1):
        result = asyncio.run(runtime.dispatcher.deliver(Delivery(run.run_id, version)))
        assert result.outcome == Outcome.STALE
    after = runtime.store.load_run(run.run_id)
    assert after is not None
    assert after.version == 2
    assert after.result_count == before.result_count

    runtime.scheduler.drain()
    assert assert_history_consistent(runtime.store, run.run_id) == ["n0", "n1", "n2", "n3", "n4"]


def test_two_dispatchers_racing_on_one_delivery_commit_once(
    clock: FakeClock, db_path: Path
) -> None:
    both_executing = threading.Barrier(2, timeout=10)
    executions: list[int] = []

    def make() -> EmbeddedRuntime:
        app = build_app(clock)

        @app.node("slow")
        def slow(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
            executions.append(1)
            both_executing.wait()  # both dispatchers are past their version check
            return StepResult({"done": True})

        app.workflow(
            "race",
            {
                "nodes": [{"id": "a", "type": "slow"}, {"id": "b", "type": "echo"}],
                "edges": [{"source": "a", "target": "b"}],
            },
        )
        return EmbeddedRuntime(app, db_path, workers=0, synchronous="NORMAL")

    first, second = make(), make()
    try:
        run = first.service.start("race").record
        outcomes: list[Outcome] = []

        def deliver(runtime: EmbeddedRuntime) -> None:
            result = asyncio.run(runtime.dispatcher.deliver(Delivery(run.run_id, 0)))
            outcomes.append(result.outcome)

        threads = [threading.Thread(target=deliver, args=(r,)) for r in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)

        assert len(executions) == 2  # the node ran twice: side effects are at least once
        assert sorted(outcomes) == sorted([Outcome.COMMITTED, Outcome.LOST_RACE])
        first.scheduler.drain()
        record = first.store.load_run(run.run_id)
        assert record is not None
        assert record.status == "completed"
        assert assert_history_consistent(first.store, run.run_id) == ["a", "b"]
    finally:
        first.stop()
        second.stop()


CRASHING_WORKER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from refluxo.host.embedded import EmbeddedRuntime
    from tests.support.clock import FakeClock
    from tests.support.apps import build_app

    runtime = EmbeddedRuntime(build_app(FakeClock()), {db!r}, workers=0, outbox=False)

    class CrashOnSchedule:
        def schedule(self, delivery):
            os._exit(17)  # the process dies after the commit, before scheduling

    runtime.dispatcher.scheduler = CrashOnSchedule()
    runtime.scheduler.drain()
    """
)


def test_a_crash_between_commit_and_schedule_is_recovered_by_redelivery(
    app: App, db_path: Path
) -> None:
    runtime = EmbeddedRuntime(app, db_path, workers=0, outbox=False)
    run = runtime.service.start("chain").record
    runtime.stop()

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WORKER.format(root=str(ROOT), db=str(db_path))],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert crashed.returncode == 17

    restarted = EmbeddedRuntime(app, db_path, workers=0, outbox=False)
    try:
        committed = restarted.store.load_run(run.run_id)
        assert committed is not None
        assert committed.version == 1  # the step before the crash was committed...
        assert [d.version for d in restarted.scheduler.pending()] == [0]  # ...not acknowledged
        restarted.scheduler.drain()
        record = restarted.store.load_run(run.run_id)
        assert record is not None
        assert record.status == "completed"
        assert assert_history_consistent(restarted.store, run.run_id) == [
            "n0",
            "n1",
            "n2",
            "n3",
            "n4",
        ]
    finally:
        restarted.stop()


def test_a_restarted_scheduler_delivers_what_was_due(app: App, db_path: Path) -> None:
    runtime = EmbeddedRuntime(app, db_path, workers=0)
    runs = [runtime.service.start("chain").record.run_id for _ in range(3)]
    runtime.stop()  # nothing delivered yet: the deliveries are only in the database

    restarted = EmbeddedRuntime(app, db_path, workers=2).start()
    try:
        assert restarted.scheduler.wait_idle(timeout=30)
        for run_id in runs:
            record = restarted.store.load_run(run_id)
            assert record is not None
            assert record.status == "completed"
            assert len(assert_history_consistent(restarted.store, run_id)) == 5
    finally:
        restarted.stop()


def test_a_retry_is_delivered_at_its_time_and_not_before(
    runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    run = runtime.service.start("flaky").record
    runtime.scheduler.drain()
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    assert record.status == "error"
    assert record.snapshot.retry_state is not None
    due = record.snapshot.retry_state.next_retry_at
    assert due == clock.now + 5000
    assert [d.due_at for d in runtime.scheduler.pending()] == [due]

    clock.advance(4999)
    assert runtime.scheduler.drain() == 0
    clock.advance(1)
    assert runtime.scheduler.drain() == 1
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    assert record.status == "error"

    clock.advance(5000)
    runtime.scheduler.drain()
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    assert record.status == "completed"
    assert assert_history_consistent(runtime.store, run.run_id) == ["f", "f", "f", "after"]
    attempts = [r.attempt for r in history_of(runtime.store, run.run_id).all("f")]
    assert attempts == [1, 2, 3]


def test_an_early_delivery_is_rescheduled_not_executed(
    runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    run = runtime.service.start("flaky").record
    runtime.scheduler.drain()
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    early = asyncio.run(runtime.dispatcher.deliver(Delivery(run.run_id, record.version)))
    assert early.outcome == Outcome.NOT_DUE
    after = runtime.store.load_run(run.run_id)
    assert after is not None
    assert after.version == record.version


def test_a_definition_changed_mid_run_does_not_affect_the_run(runtime: EmbeddedRuntime) -> None:
    app = runtime.app
    old = runtime.service.start("approval").record
    runtime.scheduler.drain()

    app.workflow(
        "approval",
        {
            "start": "ask",
            "nodes": [
                {"id": "ask", "type": "approval"},
                {"id": "yes", "type": "echo", "data": {"answer": "YES (v2)"}},
                {"id": "no", "type": "echo", "data": {"answer": "no"}},
            ],
            "edges": [
                {"source": "ask", "target": "yes", "sourceHandle": "yes"},
                {"source": "ask", "target": "no", "sourceHandle": "no"},
            ],
        },
    )
    new = runtime.service.start("approval").record
    assert new.definition_version != old.definition_version
    runtime.scheduler.drain()

    for run in (old, new):
        runtime.service.resume(run.run_id, {"ok": True})
    runtime.scheduler.drain()

    old_final = history_of(runtime.store, old.run_id).all("yes")
    new_final = history_of(runtime.store, new.run_id).all("yes")
    assert old_final[0].output == {"answer": "yes"}
    assert new_final[0].output == {"answer": "YES (v2)"}
    loaded = runtime.store.load_run(old.run_id)
    assert loaded is not None
    assert loaded.definition_version == old.definition_version


def test_an_unknown_run_delivery_is_acknowledged(runtime: EmbeddedRuntime) -> None:
    result = asyncio.run(runtime.dispatcher.deliver(Delivery("no-such-run", 0)))
    assert result.outcome == Outcome.UNKNOWN_RUN


def test_deliveries_for_finished_runs_change_nothing(runtime: EmbeddedRuntime) -> None:
    run = runtime.service.start("chain").record
    runtime.scheduler.drain()
    record = runtime.store.load_run(run.run_id)
    assert record is not None
    late = asyncio.run(runtime.dispatcher.deliver(Delivery(run.run_id, record.version)))
    assert late.outcome == Outcome.IDLE
    again = runtime.store.load_run(run.run_id)
    assert again == record


def test_deliveries_after_a_cancel_change_nothing(runtime: EmbeddedRuntime) -> None:
    run = runtime.service.start("approval").record
    runtime.scheduler.drain()
    paused = runtime.service.get(run.run_id)
    cancelled = runtime.service.cancel(run.run_id)
    for version in (paused.version, cancelled.version):
        late = asyncio.run(runtime.dispatcher.deliver(Delivery(run.run_id, version)))
        assert late.outcome in (Outcome.STALE, Outcome.IDLE)
    assert runtime.service.get(run.run_id) == cancelled
    assert assert_history_consistent(runtime.store, run.run_id) == []
