"""The reference backend under the real dispatcher: what the ``memory`` backend serves.

The contract suites prove MemoryStore and MemoryScheduler port by port; these tests prove
the pieces fit: runs advance, retry on their due times and pause, delivered in the test's
thread on a fake clock or by the runtime's own thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refluxo.backends.memory import MemoryRuntime
from refluxo.model import SnapshotStatus
from refluxo.runtime import App
from tests.support.apps import build_app
from tests.support.clock import FakeClock
from tests.support.stores import assert_history_consistent
from tests.support.waiting import wait_until


@pytest.fixture
def app(clock: FakeClock) -> App:
    return build_app(clock)


@pytest.fixture
def runtime(app: App) -> Iterator[MemoryRuntime]:
    runtime = MemoryRuntime(app)
    yield runtime
    runtime.stop()


def status_of(runtime: MemoryRuntime, run_id: str) -> SnapshotStatus:
    return runtime.service.get(run_id).status


def test_a_run_is_driven_to_completion_by_draining(runtime: MemoryRuntime) -> None:
    run_id = runtime.service.start("chain", {"x": 1}).record.run_id
    assert runtime.drain() == 5  # one delivery per node; the last completes the run
    assert status_of(runtime, run_id) == SnapshotStatus.COMPLETED
    assert assert_history_consistent(runtime.store, run_id) == ["n0", "n1", "n2", "n3", "n4"]
    assert runtime.scheduler.pending() == []


def test_a_retry_waits_for_its_due_time(runtime: MemoryRuntime, clock: FakeClock) -> None:
    run_id = runtime.service.start("flaky").record.run_id
    runtime.drain()
    assert status_of(runtime, run_id) == SnapshotStatus.ERROR
    for _ in range(2):  # two failures, 5 s apart (fixed interval)
        clock.advance(4_999)
        runtime.drain()
        assert status_of(runtime, run_id) == SnapshotStatus.ERROR
        clock.advance(1)
        runtime.drain()
    assert status_of(runtime, run_id) == SnapshotStatus.COMPLETED
    assert assert_history_consistent(runtime.store, run_id)[-1] == "after"


def test_a_paused_run_waits_for_its_resume(runtime: MemoryRuntime) -> None:
    run_id = runtime.service.start("approval").record.run_id
    runtime.drain()
    assert status_of(runtime, run_id) == SnapshotStatus.PAUSED
    assert runtime.scheduler.pending() == []
    runtime.service.resume(run_id, {"ok": True})
    runtime.drain()
    assert status_of(runtime, run_id) == SnapshotStatus.COMPLETED
    assert assert_history_consistent(runtime.store, run_id)[-1] == "yes"


def test_started_it_delivers_in_the_background(runtime: MemoryRuntime) -> None:
    runtime.start()
    run_ids = [runtime.service.start("loop").record.run_id for _ in range(3)]
    wait_until(
        lambda: all(status_of(runtime, r) == SnapshotStatus.COMPLETED for r in run_ids),
        timeout=30,
        what="three loop runs to complete",
    )
    for run_id in run_ids:
        assert assert_history_consistent(runtime.store, run_id)[-1] == "end"
    runtime.stop()
    assert runtime.scheduler.failures == 0
