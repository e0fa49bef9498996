"""No run stalls on Cloud Tasks as the service really behaves (tombstoned names, dropped
tasks, two attempts of one task at once), modelled by the fake that follows its documentation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from refluxo import StepResult
from refluxo.api.http import HttpApi
from refluxo.api.server import create_wsgi_app
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler
from refluxo.backends.memory import MemoryStore
from refluxo.errors import TransientError
from refluxo.runtime import App, Delivery, Dispatcher, Outcome, RunService
from tests.support.clock import FakeClock
from tests.support.fake_cloud_tasks import FakeCloudTasks, RetryConfig
from tests.support.google_errors import google_error

QUEUE = "projects/p/locations/l/queues/q"


def one_node_app(clock: FakeClock) -> App:
    """Workflow "w": one node ``a`` that answers "done" (the queue's handler decides failures)."""
    app = App(clock=clock)

    @app.node()
    def done(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult("done")

    app.workflow("w", {"nodes": [{"id": "a", "type": "done"}]})
    return app


def two_step_app(clock: FakeClock) -> App:
    """Workflow "w": nodes ``a`` then ``b``, each answering its data."""
    app = App(clock=clock)

    @app.node()
    def step(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.workflow(
        "w",
        {
            "nodes": [{"id": "a", "type": "step"}, {"id": "b", "type": "step"}],
            "edges": [{"source": "a", "target": "b"}],
        },
    )
    return app


def scheduler_on(fake: FakeCloudTasks, clock: FakeClock | None = None) -> CloudTasksScheduler:
    url = "http://127.0.0.1:1/tasks/step"
    if clock is None:
        return CloudTasksScheduler(fake, queue_path=QUEUE, url=url)
    return CloudTasksScheduler(fake, queue_path=QUEUE, url=url, clock=clock)


def service_on(fake: FakeCloudTasks, app: App) -> RunService:
    return RunService(Dispatcher(app, MemoryStore(), scheduler_on(fake)))


def delivery_of(task: tasks_v2.Task) -> Delivery:
    body = json.loads(task.http_request.body)
    return Delivery(body["runId"], body["version"], body["dueAt"], body["hop"])


def test_a_start_retried_after_its_task_was_dropped_schedules_it_again(clock: FakeClock) -> None:
    """S1: the step keeps failing, the queue gives up and deletes the task; the name is a
    tombstone for an hour. A retried start must not take the tombstone for "scheduled"."""
    broken = {"on": True}
    app = one_node_app(clock)
    fake = FakeCloudTasks(QUEUE, clock, RetryConfig(max_attempts=3, min_backoff_ms=10))
    service = service_on(fake, app)
    service.start("w", None, run_id="order-1")

    def handler(task: tasks_v2.Task) -> None:
        if broken["on"]:
            raise TimeoutError("the function timed out")
        service.deliver(delivery_of(task))

    for _ in range(5):
        fake.dispatch_due(handler)
        clock.advance(100)
    assert fake.dropped  # the queue gave up on the task...
    assert not fake.queued()  # ...and none is left
    assert service.get("order-1").status == "active"

    broken["on"] = False
    service.start("w", None, run_id="order-1")  # the client retries its start
    assert fake.queued(), "the retried start left the run without a task"
    fake.dispatch_due(handler)
    assert service.get("order-1").status == "completed"
    service.close()


def test_a_lost_race_schedules_what_the_winner_could_not(clock: FakeClock) -> None:
    """S2: two attempts of one task run at once; the winner commits, then fails to create
    the next task; the loser must make sure the stored run's next step is scheduled."""
    app = two_step_app(clock)
    fake = FakeCloudTasks(QUEUE, clock)
    scheduler = scheduler_on(fake)
    store = MemoryStore()
    winner = RunService(Dispatcher(app, store, scheduler))
    run = winner.start("w", None, run_id="race-1").record
    first = Delivery(run.run_id, 0)

    # The winner commits version 1, and its CreateTask for version 1 fails (503).
    fake.unavailable = False
    original = fake.create_task

    def failing_create(**kwargs: Any) -> Any:
        raise TransientError("503 from Cloud Tasks")

    fake.create_task = failing_create  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        winner.deliver(first)
    fake.create_task = original  # type: ignore[method-assign]
    assert store.load_run(run.run_id).version == 1  # type: ignore[union-attr]
    assert not [t for t in fake.queued() if delivery_of(t).version == 1]

    # The loser, holding the same delivery, finds the version moved on.
    loser = RunService(Dispatcher(app, store, scheduler))
    result = loser.deliver(first)
    assert result.outcome in (Outcome.STALE, Outcome.LOST_RACE)
    assert [delivery_of(t).version for t in fake.queued()].count(1) >= 1
    winner.close()
    loser.close()


def test_the_loser_of_a_commit_race_schedules_the_stored_run(clock: FakeClock) -> None:
    """The lost-race path itself: a commit refused because another attempt committed first."""
    app = two_step_app(clock)
    fake = FakeCloudTasks(QUEUE, clock)
    scheduler = scheduler_on(fake)
    store = MemoryStore()
    service = RunService(Dispatcher(app, store, scheduler))
    run = service.start("w", None, run_id="race-2").record
    loaded = store.load_run(run.run_id)
    assert loaded is not None

    # Another attempt commits version 1 between this attempt's load and its commit, and
    # its CreateTask is lost: nothing is queued for version 1.
    real_load = store.load_run
    raced = {"done": False}

    def load_then_race(run_id: str) -> Any:
        record = real_load(run_id)
        if not raced["done"] and record is not None and record.version == 0:
            raced["done"] = True
            from refluxo.runtime.ports import StepCommit

            head = record.snapshot.model_copy(update={"version": 1, "current_node_id": "b"})
            assert store.commit(StepCommit(run_id, 0, head)).committed
        return record

    store.load_run = load_then_race  # type: ignore[method-assign]
    for task in fake.queued():
        fake.delete_task(name=task.name)
    result = service.deliver(Delivery(run.run_id, 0))
    store.load_run = real_load  # type: ignore[method-assign]
    assert result.outcome == Outcome.LOST_RACE
    assert [delivery_of(t).version for t in fake.queued()] == [1]
    service.close()


def test_a_start_whose_task_could_not_be_created_is_reconciled(clock: FakeClock) -> None:
    """S3: ``POST /runs`` creates the run, then CreateTask answers 503: the caller gets an
    error and never learns the run id. The reconciler finds the run once it is overdue by
    the grace period, and its step is scheduled again; the run completes."""
    grace_ms = 600_000
    app = two_step_app(clock)
    fake = FakeCloudTasks(QUEUE, clock)
    scheduler = scheduler_on(fake, clock)
    store = MemoryStore(clock=clock)
    service = RunService(Dispatcher(app, store, scheduler), reconcile_grace_ms=grace_ms)

    api = create_wsgi_app(HttpApi(service)).test_client()

    def reconcile() -> dict[str, Any]:
        response = api.post("/tasks/reconcile", json={})
        assert response.status_code == 200, response.get_json()
        answer: dict[str, Any] = response.get_json()
        return answer

    fake.unavailable = True
    started = api.post("/runs", json={"workflow": "w", "input": {"n": 1}})
    fake.unavailable = False
    assert started.status_code == 503  # the caller sees an error, and no run id
    assert set(started.get_json()) == {"error"}
    (run,) = store.list_runs().runs
    assert run.status == "active"
    assert fake.queued() == []

    def handler(task: tasks_v2.Task) -> None:
        service.deliver(delivery_of(task))

    # Within the grace period nothing is scheduled: the step may merely be slow.
    clock.advance(grace_ms - 1)
    assert reconcile() == {"examined": 0, "rescheduled": 0, "nextCursor": None}
    assert fake.queued() == []

    clock.advance(1)
    assert reconcile() == {"examined": 1, "rescheduled": 1, "nextCursor": None}
    assert [delivery_of(task) for task in fake.queued()] == [Delivery(run.run_id, 0)]
    while fake.dispatch_due(handler):
        clock.advance(1_000)
    assert service.get(run.run_id).status == "completed"
    assert service.get(run.run_id).result_count == 2

    # Reconciling again finds nothing: the run has ended.
    clock.advance(10 * grace_ms)
    assert service.reconcile(grace_ms=grace_ms).examined == 0
    service.close()


def test_a_task_dropped_after_its_last_attempt_is_reconciled(clock: FakeClock) -> None:
    """The queue gives up on a step after its last attempt and deletes the task (its name
    stays a tombstone for an hour): the reconciler schedules the step under a fresh name."""
    grace_ms = 600_000
    broken = {"on": True}
    app = one_node_app(clock)
    fake = FakeCloudTasks(QUEUE, clock, RetryConfig(max_attempts=3, min_backoff_ms=10))
    scheduler = scheduler_on(fake, clock)
    service = RunService(Dispatcher(app, MemoryStore(clock=clock), scheduler))
    service.start("w", None, run_id="dropped-1")

    def handler(task: tasks_v2.Task) -> None:
        if broken["on"]:
            raise TimeoutError("the function timed out")
        service.deliver(delivery_of(task))

    for _ in range(5):
        fake.dispatch_due(handler)
        clock.advance(100)
    assert fake.dropped
    assert not fake.queued()
    broken["on"] = False

    clock.advance(grace_ms)
    report = service.reconcile(grace_ms=grace_ms)
    assert (report.examined, report.rescheduled) == (1, 1)
    assert fake.queued(), "the reconciler took the tombstone for a scheduled task"
    fake.dispatch_due(handler)
    assert service.get("dropped-1").status == "completed"
    service.close()


class NoGetTaskPermission(FakeCloudTasks):
    """A queue whose caller lacks cloudtasks.tasks.get (the enqueuer role alone)."""

    def get_task(self, *, name: str, **_: Any) -> tasks_v2.Task:
        raise google_error(exceptions.PermissionDenied, "cloudtasks.tasks.get denied")


def test_without_permission_to_look_a_task_up_a_tombstone_is_still_replaced(
    clock: FakeClock,
) -> None:
    """GetTask refused: the scheduler cannot tell a queued task from a tombstone, and must
    not leave the run stalled: it schedules under a fresh name (at worst a duplicate)."""
    app = one_node_app(clock)
    fake = NoGetTaskPermission(QUEUE, clock, RetryConfig(max_attempts=1))
    scheduler = scheduler_on(fake, clock)
    service = RunService(Dispatcher(app, MemoryStore(clock=clock), scheduler))
    service.start("w", None, run_id="denied-1")

    def timeout(task: tasks_v2.Task) -> None:
        raise TimeoutError("the function timed out")

    fake.dispatch_due(timeout)
    assert fake.dropped  # the name is now a tombstone
    assert not fake.queued()
    clock.advance(600_000)
    report = service.reconcile(grace_ms=600_000)
    assert report.rescheduled == 1
    assert fake.queued()
    fake.dispatch_due(lambda task: service.deliver(delivery_of(task)))
    assert service.get("denied-1").status == "completed"
    # A retried start whose task is still queued answers 200, never a 500.
    again = service.start("w", None, run_id="denied-1")
    assert not again.created
    service.close()
