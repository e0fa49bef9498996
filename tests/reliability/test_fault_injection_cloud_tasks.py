"""Fault injection against Cloud Tasks as the service documents it, with the reconciler on.

The Cloud Tasks emulator forgives what the service does not, so this suite drives runs
through :class:`~tests.support.fake_cloud_tasks.FakeCloudTasks` (tombstoned names for an
hour, a task deleted after its last attempt, an answer after the dispatch deadline counted
as a failure, two attempts of one task at once) on a fake clock, with the Firestore
emulator as the store, and injects on top:

* starts whose ``CreateTask`` fails and that the caller never retries (S3);
* steps whose ``CreateTask`` fails after the commit (S2's winner);
* outages of the whole queue (every call ``UNAVAILABLE``);
* attempts that time out before the step runs, often enough that the queue gives up on
  some tasks and deletes them (S1);
* attempts that run the step and answer after the deadline (a retry follows: a duplicate);
* attempts that outlive their deadline while the queue starts the next attempt, so two
  attempts of one task run at once (S2's race).

A Cloud Scheduler job calls the reconciler every five minutes, as Terraform deploys it. In
the end every run must have completed along its exact path, each step committed once,
every map's output must hold each child's outcome in item order (a dropped child task or
report is found by the reconciler), and no task may be left behind.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import firestore, tasks_v2

from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.errors import TransientError
from refluxo.runtime import Delivery, Dispatcher, RunService
from tests.support import emulators
from tests.support.clock import FakeClock
from tests.support.emulators import EMULATOR_PROJECT
from tests.support.fake_cloud_tasks import FakeCloudTasks, RetryConfig
from tests.support.faults import build_fault_app, expected_path, fanout_output
from tests.support.google_errors import google_error

QUEUE = "projects/p/locations/l/queues/faults"
RUNS = 40
WORKFLOWS = ("chain", "branch", "loop", "flaky", "fanout")
RECONCILE_EVERY_MS = 5 * 60_000
GRACE_MS = 10 * 60_000
DEADLINE_S = 120


class FlakyClient:
    """The fake's client methods, with ``CreateTask`` failing when told to."""

    def __init__(self, fake: FakeCloudTasks, rng: random.Random, faults: Counter[str]) -> None:
        self.fake = fake
        self.rng = rng
        self.faults = faults
        self.fail_next_create = False
        self.create_failure_rate = 0.0

    def create_task(self, **kwargs: Any) -> Any:
        if self.fail_next_create or self.rng.random() < self.create_failure_rate:
            self.fail_next_create = False
            self.faults["create_task_failed"] += 1
            raise google_error(exceptions.ServiceUnavailable, "CreateTask: 503")
        return self.fake.create_task(**kwargs)

    def get_task(self, **kwargs: Any) -> Any:
        return self.fake.get_task(**kwargs)


@pytest.fixture(scope="module")
def firestore_host() -> Iterator[str]:
    with emulators.shared("firestore", emulators.start_firestore) as emulator:
        yield emulator.host_port


def test_runs_survive_the_documented_service_s_faults_with_the_reconciler(
    firestore_host: str, clock: FakeClock
) -> None:
    rng = random.Random(20261127)
    faults: Counter[str] = Counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
        client = firestore.Client(project=EMULATOR_PROJECT)
    store = FirestoreStore(client, prefix=f"tasksfaults{uuid.uuid4().hex[:10]}", clock=clock)
    fake = FakeCloudTasks(
        QUEUE,
        clock,
        RetryConfig(max_attempts=4, min_backoff_ms=1_000, max_backoff_ms=60_000),
    )
    flaky_client = FlakyClient(fake, rng, faults)
    scheduler = CloudTasksScheduler(
        flaky_client,
        queue_path=QUEUE,
        url="https://dispatcher.example/tasks/step",
        dispatch_deadline_s=DEADLINE_S,
        clock=clock,
    )
    app = build_fault_app(clock)
    service = RunService(Dispatcher(app, store, scheduler))
    outcomes: Counter[str] = Counter()

    # -- starting: some starts lose their task and the caller never retries (S3) ----------
    for index in range(RUNS):
        run_id = f"run-{index:03d}"
        flaky_client.fail_next_create = index % 8 == 3
        try:
            service.start(WORKFLOWS[index % len(WORKFLOWS)], {"n": index}, run_id=run_id)
        except TransientError:
            faults["start_abandoned"] += 1  # the run exists; its task does not

    # -- delivering ----------------------------------------------------------------------
    flaky_client.create_failure_rate = 0.05
    doomed: set[str] = set()  # tasks whose every attempt times out until the queue drops them

    def deliver(task: tasks_v2.Task) -> None:
        body = json.loads(task.http_request.body)
        delivery = Delivery(body["runId"], body["version"], body["dueAt"], body["hop"])
        if task.name in doomed or (len(doomed) < 4 and rng.random() < 0.03):
            doomed.add(task.name)
            faults["attempt_timed_out"] += 1
            raise TimeoutError("the function timed out before answering")
        roll = rng.random()
        if roll < 0.05:
            faults["answer_after_deadline"] += 1
            outcomes[_deliver(service, delivery)] += 1
            clock.advance(DEADLINE_S * 1000 + 1)  # the queue stopped waiting meanwhile
            return
        if roll < 0.09 and faults["overlapping_attempts"] < 12:
            faults["overlapping_attempts"] += 1
            # This attempt outlives its deadline; the queue starts the next one meanwhile.
            clock.advance(DEADLINE_S * 1000 + 60_000 + 1)
            fake.dispatch_due(deliver)
            outcomes[_deliver(service, delivery)] += 1
            return
        outcomes[_deliver(service, delivery)] += 1

    next_reconcile = clock.now + RECONCILE_EVERY_MS
    outage_until = 0
    reconciled = Counter[str]()
    for iteration in range(20_000):
        # A random outage now and then, and one for sure early on (whatever the draws).
        forced = iteration == 5 and not faults["queue_outage"]
        if (rng.random() < 0.01 or forced) and not fake.unavailable:
            fake.unavailable = True
            outage_until = clock.now + rng.randint(10_000, 300_000)
            faults["queue_outage"] += 1
        if fake.unavailable and clock.now >= outage_until:
            fake.unavailable = False
        fake.dispatch_due(deliver, limit=20)
        if clock.now >= next_reconcile:
            report = service.reconcile(grace_ms=GRACE_MS)
            reconciled["passes"] += 1
            reconciled["rescheduled"] += report.rescheduled
            next_reconcile = clock.now + RECONCILE_EVERY_MS
        if all(_finished(store, index) for index in range(RUNS)) and not fake.queued():
            break
        upcoming = [next_reconcile, outage_until if fake.unavailable else next_reconcile]
        due = fake.next_dispatch_at()
        if due is not None and not fake.unavailable:
            upcoming.append(due)
        clock.now = max(clock.now + 1, min(upcoming))
    else:
        raise AssertionError("the runs did not converge")

    # -- the audit -----------------------------------------------------------------------
    anomalies = []
    for index in range(RUNS):
        run_id = f"run-{index:03d}"
        record = store.load_run(run_id)
        assert record is not None, run_id
        if record.status != "completed":
            anomalies.append(f"{run_id}: {record.status.value}")
            continue
        timeline = store.timeline(run_id, limit=10_000)
        if [entry.seq for entry in timeline] != list(range(record.result_count)):
            anomalies.append(f"{run_id}: results are not numbered 0..n-1")
        workflow = WORKFLOWS[index % len(WORKFLOWS)]
        path = [e.node_id for e in timeline if workflow == "flaky" or e.result.error is None]
        if path != expected_path(workflow, index, None):
            anomalies.append(f"{run_id}: path {path}")
        if workflow == "fanout":
            mapped = next(e.result.output for e in timeline if e.node_id == "m")
            without_ids = [{"error": e["error"]} if "error" in e else e for e in mapped]
            if without_ids != fanout_output(index):
                anomalies.append(f"{run_id}: map output {mapped}")
    service.close()
    assert anomalies == []
    assert fake.dropped, "no task was dropped after its last attempt: S1 was not exercised"
    assert faults["start_abandoned"] >= 4
    assert faults["create_task_failed"] > faults["start_abandoned"]
    assert faults["answer_after_deadline"] > 0
    assert faults["overlapping_attempts"] > 0
    assert faults["queue_outage"] > 0
    # Only the reconciler can find an abandoned start; a dropped task's run may also have
    # moved on through a duplicate attempt (whose stale answer schedules the stored run).
    assert reconciled["rescheduled"] >= faults["start_abandoned"]
    assert outcomes["stale"] + outcomes["lost_race"] > 0  # the duplicates committed nothing


def _deliver(service: RunService, delivery: Delivery) -> str:
    """Deliver as the step endpoint does: a transient failure is a 503, retried by the queue."""
    return service.deliver(delivery).outcome.value


def _finished(store: FirestoreStore, index: int) -> bool:
    record = store.load_run(f"run-{index:03d}")
    return record is not None and record.status.is_terminal
