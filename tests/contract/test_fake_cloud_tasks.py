"""The fake Cloud Tasks client keeps the service's documented rules, where the emulator does not.

The scheduler contract runs CloudTasksScheduler on this fake so that what the emulator
lets pass (a name created twice, a ``schedule_time`` past 30 days) fails as it would on
Google Cloud. These tests pin the fake to the documentation it claims to follow.
"""

from __future__ import annotations

import datetime

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from refluxo.backends.gcp.cloud_tasks import (
    MAX_SCHEDULE_AHEAD_MS,
    CloudTasksScheduler,
)
from refluxo.runtime.ports import Delivery
from tests.support.clock import FakeClock
from tests.support.fake_cloud_tasks import (
    DAY_MS,
    NAME_REUSE_MS,
    FakeCloudTasks,
    RetryConfig,
    schedule_time_ms,
)

QUEUE = "projects/demo-test/locations/here/queues/fake"


def task(task_id: str, *, at_ms: int | None = None) -> tasks_v2.Task:
    created = tasks_v2.Task(
        name=f"{QUEUE}/tasks/{task_id}",
        http_request=tasks_v2.HttpRequest(url="https://run.example/step", body=b"{}"),
    )
    if at_ms is not None:
        seconds, millis = divmod(at_ms, 1000)
        created.schedule_time = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(
            microsecond=millis * 1000
        )
    return created


@pytest.fixture
def service(clock: FakeClock) -> FakeCloudTasks:
    return FakeCloudTasks(QUEUE, clock, retry=RetryConfig(max_attempts=3))


def succeed(_: tasks_v2.Task) -> None:
    return None


def fail(_: tasks_v2.Task) -> None:
    raise RuntimeError("HTTP 503")


def test_a_name_is_taken_while_queued_and_for_an_hour_after_the_task_ran(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    service.create_task(parent=QUEUE, task=task("a"))
    with pytest.raises(exceptions.AlreadyExists):
        service.create_task(parent=QUEUE, task=task("a"))
    assert service.dispatch_due(succeed) == 1
    clock.advance(NAME_REUSE_MS - 1)
    with pytest.raises(exceptions.AlreadyExists):
        service.create_task(parent=QUEUE, task=task("a"))
    clock.advance(1)
    service.create_task(parent=QUEUE, task=task("a"))  # the name is free again


def test_a_schedule_time_more_than_thirty_days_ahead_is_refused(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="30 days"):
        service.create_task(parent=QUEUE, task=task("far", at_ms=clock() + 30 * DAY_MS + 1))
    at_limit = service.create_task(parent=QUEUE, task=task("limit", at_ms=clock() + 30 * DAY_MS))
    assert schedule_time_ms(at_limit) == clock() + 30 * DAY_MS
    unset = service.create_task(parent=QUEUE, task=task("now"))
    assert schedule_time_ms(unset) == clock()  # unset means now
    assert service.next_dispatch_at() == clock()


def test_a_task_runs_at_its_schedule_time_not_before(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    service.create_task(parent=QUEUE, task=task("later", at_ms=clock() + 5_000))
    clock.advance(4_999)
    assert service.dispatch_due(succeed) == 0
    clock.advance(1)
    assert service.dispatch_due(succeed) == 1
    assert service.queued() == []


def test_failures_are_retried_with_backoff_then_the_task_is_dropped_and_its_name_kept(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    name = f"{QUEUE}/tasks/flaky"
    service.create_task(parent=QUEUE, task=task("flaky"))
    for expected_backoff in (100, 200):
        assert service.dispatch_due(fail) == 1
        assert service.next_dispatch_at() == clock() + expected_backoff
        clock.advance(expected_backoff)
    assert service.dispatch_due(fail) == 1  # the third attempt of three
    assert service.queued() == []
    assert service.dropped == [name]
    assert [attempt.execution for attempt in service.attempts] == [1, 2, 3]
    with pytest.raises(exceptions.AlreadyExists):  # a dropped task's name stays taken
        service.create_task(parent=QUEUE, task=task("flaky"))


def test_retries_go_on_until_both_attempts_and_duration_are_spent(clock: FakeClock) -> None:
    retry = RetryConfig(max_attempts=2, max_retry_duration_ms=10_000, min_backoff_ms=1_000)
    service = FakeCloudTasks(QUEUE, clock, retry=retry)
    service.create_task(parent=QUEUE, task=task("t"))
    while service.queued():
        service.dispatch_due(fail)
        upcoming = service.next_dispatch_at()
        if upcoming is not None:
            clock.now = upcoming
    # Attempts at 0, 1, 3, 7 s (still within 10 s), 15 s (past both limits): dropped.
    assert len(service.attempts) == 5


def test_backoff_doubles_then_grows_linearly_up_to_the_maximum() -> None:
    """The RetryConfig documentation's example: 10 s min, 300 s max, 3 doublings."""
    retry = RetryConfig(min_backoff_ms=10_000, max_backoff_ms=300_000, max_doublings=3)
    delays = [retry.backoff_ms(n) // 1000 for n in range(1, 9)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300]


def test_get_and_delete_task(service: FakeCloudTasks) -> None:
    name = f"{QUEUE}/tasks/t"
    service.create_task(parent=QUEUE, task=task("t"))
    assert service.get_task(name=name).name == name
    service.delete_task(name=name)
    with pytest.raises(exceptions.NotFound):
        service.get_task(name=name)
    with pytest.raises(exceptions.NotFound):
        service.delete_task(name=name)
    with pytest.raises(exceptions.AlreadyExists):  # deleted: the name stays taken
        service.create_task(parent=QUEUE, task=task("t"))
    assert service.dispatch_due(succeed) == 0


def test_malformed_requests_are_refused(service: FakeCloudTasks) -> None:
    with pytest.raises(exceptions.NotFound):
        service.create_task(parent=f"{QUEUE}-other", task=task("t"))
    with pytest.raises(exceptions.InvalidArgument):
        service.create_task(parent=QUEUE, task=task("not/valid"))
    short = task("short")
    short.dispatch_deadline = datetime.timedelta(seconds=5)
    with pytest.raises(exceptions.InvalidArgument):
        service.create_task(parent=QUEUE, task=short)
    unnamed = service.create_task(parent=QUEUE, task=tasks_v2.Task())
    assert unnamed.name.startswith(f"{QUEUE}/tasks/")


def test_the_scheduler_never_asks_for_more_than_thirty_days_ahead(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    for max_delay_ms in (29 * DAY_MS, MAX_SCHEDULE_AHEAD_MS):
        scheduler = CloudTasksScheduler(
            service,
            queue_path=QUEUE,
            url="https://run.example/step",
            clock=clock,
            max_delay_ms=max_delay_ms,
        )
        for days in (1, 29, 30, 31, 90, 400):
            delivery = Delivery(f"run-{max_delay_ms}", days, due_at=clock() + days * DAY_MS)
            scheduler.schedule(delivery)  # the fake refuses > 30 days: this would raise
            scheduled = schedule_time_ms(service.get_task(name=scheduler.task_name(delivery)))
            assert scheduled == min(delivery.due_at, clock() + max_delay_ms)


def test_an_answer_after_the_dispatch_deadline_is_a_failure_and_the_task_is_retried(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    slow = task("slow")
    slow.dispatch_deadline = datetime.timedelta(seconds=30)
    service.create_task(parent=QUEUE, task=slow)

    def outlive_the_deadline(_: tasks_v2.Task) -> None:
        clock.advance(31_000)  # the step takes 31 s: the service stopped waiting at 30 s

    assert service.dispatch_due(outlive_the_deadline, limit=1) == 1
    assert [a.succeeded for a in service.attempts] == [False]
    assert service.queued(), "a late success must not complete the task"
    clock.advance(10_000)
    service.dispatch_due(succeed)
    assert [a.succeeded for a in service.attempts] == [False, True]
    assert not service.queued()


def test_an_attempt_past_its_deadline_overlaps_the_next_attempt(
    service: FakeCloudTasks, clock: FakeClock
) -> None:
    slow = task("overlap")
    slow.dispatch_deadline = datetime.timedelta(seconds=30)
    service.create_task(parent=QUEUE, task=slow)
    running: list[str] = []
    overlapped: list[list[str]] = []

    def first_attempt(current: tasks_v2.Task) -> None:
        running.append(current.name)
        clock.advance(29_000)
        assert service.dispatch_due(second_attempt) == 0  # within the deadline: no retry
        clock.advance(2_000 + 1_000)  # past the deadline and the backoff
        assert service.dispatch_due(second_attempt) == 1
        running.remove(current.name)

    def second_attempt(current: tasks_v2.Task) -> None:
        overlapped.append([*running, current.name])

    service.dispatch_due(first_attempt, limit=1)
    assert overlapped == [[f"{QUEUE}/tasks/overlap"] * 2]  # two attempts of one task at once
    assert [a.succeeded for a in service.attempts] == [True, False]
    assert not service.queued()
