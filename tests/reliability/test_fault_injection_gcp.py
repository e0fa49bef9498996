"""Fault injection on the Google Cloud backends: the real Firestore and Cloud Tasks emulators.

The same driver as the embedded run (:class:`~tests.support.faults.FaultDriver`),
at small scale: the runs' heads and results live in the Firestore emulator
(:class:`FirestoreStore`), every next step is a task created on the Cloud Tasks emulator
(:class:`CloudTasksScheduler`, real gRPC) and comes back as the emulator's HTTP request
to a receiver on 127.0.0.1 (:class:`~tests.support.gcp_queue.EmulatorQueue`). The
driver's clock is fake; see the queue's module docstring for how the emulator's wall
clock is kept out of the timing path.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.runtime.dispatcher import Dispatcher
from tests.support import emulators
from tests.support.clock import FakeClock
from tests.support.emulators import EMULATOR_PROJECT, TasksEmulator
from tests.support.faults import DEFAULT_RATES, FaultDriver, FaultPlan, build_fault_app
from tests.support.gcp_queue import EmulatorQueue, immediate_clock

RUNS = 60
QUEUE = f"projects/{EMULATOR_PROJECT}/locations/here/queues/faults"

# Rates for 60 runs (~450 deliveries) instead of the embedded run's 1,000 runs:
# * concurrent_delivery: 0.02 gives ~9 concurrent deliveries, of which some conflict (the
#   loser's guarded batch is refused: a lost race, its delivery acknowledged).
# * The rarer kinds are raised so that each is expected about ten times at this scale
#   (a kind missing by chance would fail the "every kind injected" check, and a failure
#   path hit once is barely tested); the driver's sequence is not reproducible here, as
#   the order in which the emulator's requests arrive varies from run to run.
#   duplicate_resume is drawn once per answered approval (9 of them), late_resume once
#   per delivery but only after the first answer. ledger_reply_lost is drawn once per
#   child end (about 35 in the 10 fanout runs).
GCP_RATES = {
    **DEFAULT_RATES,
    "concurrent_delivery": 0.02,
    "crash_between_commit_and_schedule": 0.04,
    "scheduling_failure": 0.04,
    "store_failure_before_commit": 0.04,
    "store_reply_lost_after_commit": 0.04,
    "duplicate_resume": 0.75,
    "late_resume": 0.2,
    "ledger_reply_lost": 0.3,
}

EXPECTED_KINDS = set(DEFAULT_RATES)
"""Every kind: without a transactional outbox, a crash between commit and schedule and a
duplicate schedule are real on this backend too."""


@pytest.fixture(scope="module")
def firestore_host() -> Iterator[str]:
    """The session's Firestore emulator (shared with the other Google Cloud suites)."""
    with emulators.shared("firestore", emulators.start_firestore) as emulator:
        yield emulator.host_port


@pytest.fixture(scope="module")
def tasks_emulator() -> Iterator[TasksEmulator]:
    """A Cloud Tasks emulator of its own: its one-request-at-a-time queue serves only us."""
    emulator = emulators.start_tasks(QUEUE)
    try:
        yield emulator
    finally:
        emulator.process.stop()


def test_runs_under_faults_on_the_emulators_end_as_expected(
    firestore_host: str,
    tasks_emulator: TasksEmulator,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
        client = firestore.Client(project=EMULATOR_PROJECT)
    prefix = f"faults{uuid.uuid4().hex[:12]}"
    app = build_fault_app(clock)
    started = time.monotonic()
    with (
        tasks_client_for_emulator(tasks_emulator.host_port) as tasks_client,
        EmulatorQueue(tasks_client) as queue,
    ):

        def scheduler() -> CloudTasksScheduler:
            return CloudTasksScheduler(
                queue, queue_path=QUEUE, url=queue.url, clock=immediate_clock
            )

        def store() -> FirestoreStore:
            return FirestoreStore(client, prefix=prefix, clock=clock)

        driver = FaultDriver(
            app=app,
            clock=clock,
            store=store(),
            scheduler=scheduler(),
            queue=queue,
            plan=FaultPlan(random.Random(20240611), dict(GCP_RATES)),
            # A second process: its own store and scheduler objects, the same emulators.
            second_dispatcher=lambda: Dispatcher(app, store(), scheduler()),
        )
        report = driver.run(RUNS)
        stats = queue.stats
    elapsed = time.monotonic() - started
    api = getattr(client, "_firestore_api_internal", None)
    if api is not None:
        api.transport.close()

    with capsys.disabled():
        print(
            f"\n[fault injection, Firestore + Cloud Tasks emulators] {report.render()}; "
            f"tasks created {stats.created}, HTTP deliveries received {stats.received}; "
            f"{elapsed:.1f} s"
        )
    assert report.anomalies == [], report.anomalies[:10]
    assert report.runs == RUNS
    assert stats.rejected == []
    assert stats.received == stats.created > 0
    injected = {kind for kind, count in report.faults.items() if count > 0}
    assert injected >= EXPECTED_KINDS, sorted(EXPECTED_KINDS - injected)
    assert report.outcomes.get("stale", 0) > 0
    # Each race has a loser, on either side: here the second dispatcher often commits
    # first (its thread starts before the driver's own delivery), and the driver's
    # dispatcher then reports a plain ``lost_race`` (nothing else produces one).
    outcomes = report.outcomes
    losers = ("lost_race", "concurrent_lost_race", "concurrent_stale")
    assert sum(outcomes.get(kind, 0) for kind in losers) > 0, outcomes
