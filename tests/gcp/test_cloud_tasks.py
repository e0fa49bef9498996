"""CloudTasksScheduler: against the real tasks emulator, and a fake client for what it lacks.

The emulator delivers real HTTP tasks on time, but it accepts a task name twice, a
``schedule_time`` beyond 30 days, and ignores OIDC tokens. The fake client below behaves
like the service on those points, so the dedup path, the delay cap and the token are
tested against the service's rules rather than the emulator's leniency.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from refluxo.backends.gcp.cloud_tasks import (
    MAX_SCHEDULE_AHEAD_MS,
    CloudTasksScheduler,
    clamp_dispatch_deadline,
    tasks_client_for_emulator,
)
from refluxo.errors import TransientError
from refluxo.runtime.ports import Delivery, Scheduler
from tests.support.clock import FakeClock
from tests.support.emulators import TasksEmulator
from tests.support.google_errors import google_error
from tests.support.receiver import HttpReceiver

QUEUE = "projects/demo-test/locations/here/queues/fake"
DAY_MS = 24 * 3600 * 1000


def _ms(value: datetime.datetime) -> int:
    return int(value.timestamp() * 1000)


class FakeCloudTasks:
    """``create_task`` with the service's rules: unique names, 30-day horizon, deadlines."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.requests: list[tuple[str, tasks_v2.Task]] = []
        self.fail_with: Exception | None = None

    def create_task(self, *, parent: str, task: tasks_v2.Task) -> tasks_v2.Task:
        self.requests.append((parent, task))
        if self.fail_with is not None:
            raise self.fail_with
        if not task.name.startswith(f"{parent}/tasks/"):
            raise google_error(
                exceptions.InvalidArgument, f"task name {task.name} not under {parent}"
            )
        if task.name in self.tasks:
            raise google_error(exceptions.AlreadyExists, "Requested entity already exists")
        if "schedule_time" in task and (
            _ms(task.schedule_time) > self.clock() + MAX_SCHEDULE_AHEAD_MS
        ):
            raise google_error(
                exceptions.InvalidArgument,
                "The Task.scheduleTime is too far in the future. Specify a Task.scheduleTime "
                "that is less than 30 days in the future.",
            )
        deadline = task.dispatch_deadline.total_seconds()
        if not 15 <= deadline <= 1800:
            raise google_error(
                exceptions.InvalidArgument, "dispatch_deadline must be in [15s, 30m]"
            )
        self.tasks[task.name] = task
        return task

    def get_task(self, *, name: str) -> tasks_v2.Task:
        if self.fail_with is not None:
            raise self.fail_with
        if name not in self.tasks:
            raise google_error(exceptions.NotFound, f"task {name} not found")
        return self.tasks[name]


@pytest.fixture
def fake(clock: FakeClock) -> FakeCloudTasks:
    return FakeCloudTasks(clock)


def scheduler_for(fake: FakeCloudTasks, clock: FakeClock, **options: Any) -> CloudTasksScheduler:
    return CloudTasksScheduler(
        fake, queue_path=QUEUE, url="https://run.example/deliver", clock=clock, **options
    )


# -- against the emulator -------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


def test_emulator_posts_the_delivery_at_its_schedule_time(
    tasks_emulator: TasksEmulator, receiver: HttpReceiver
) -> None:
    with tasks_client_for_emulator(tasks_emulator.host_port) as client:
        scheduler = CloudTasksScheduler(
            client, queue_path=tasks_emulator.queue_path, url=receiver.url
        )
        assert isinstance(scheduler, Scheduler)
        now_ms = time.time_ns() // 1_000_000
        later = Delivery("emu-run", 3, due_at=now_ms + 1200, hop=1)
        scheduler.schedule(later)
        scheduler.schedule(Delivery("emu-run", 2))  # due now: delivered first

        first = receiver.next(timeout=10)
        assert json.loads(first.body) == {"runId": "emu-run", "version": 2, "dueAt": 0, "hop": 0}
        assert first.method == "POST"
        assert first.path == "/deliver"
        assert first.headers["content-type"] == "application/json"
        assert first.headers["x-cloudtasks-taskname"] == Delivery("emu-run", 2).name

        second = receiver.next(timeout=10)
        assert json.loads(second.body) == {
            "runId": "emu-run",
            "version": 3,
            "dueAt": later.due_at,
            "hop": 1,
        }
        assert second.at_ms >= later.due_at
        assert second.headers["x-cloudtasks-taskname"] == later.name
        assert second.headers["x-cloudtasks-queuename"].endswith("/queues/refluxo")


# -- against a client that behaves like the service -------------------------------------------


def test_the_task_is_a_json_post_named_by_the_delivery_hash(
    fake: FakeCloudTasks, clock: FakeClock
) -> None:
    delivery = Delivery("run-1", 7, due_at=clock() + 5_000, hop=0)
    scheduler_for(fake, clock).schedule(delivery)
    ((parent, task),) = fake.requests
    assert parent == QUEUE
    assert task.name == f"{QUEUE}/tasks/{delivery.name}"
    assert re.fullmatch(r"[0-9a-f]{32}", task.name.rsplit("/", 1)[1])
    assert task.http_request.http_method == tasks_v2.HttpMethod.POST
    assert task.http_request.url == "https://run.example/deliver"
    assert task.http_request.headers["Content-Type"] == "application/json"
    assert json.loads(task.http_request.body) == {
        "runId": "run-1",
        "version": 7,
        "dueAt": delivery.due_at,
        "hop": 0,
    }
    assert _ms(task.schedule_time) == delivery.due_at
    # Neighbouring deliveries get unrelated names (no sequential hotspot).
    names = {Delivery("run-1", v).name[:4] for v in range(8)}
    assert len(names) == 8


def test_scheduling_the_same_delivery_twice_creates_one_task(
    fake: FakeCloudTasks, clock: FakeClock
) -> None:
    scheduler = scheduler_for(fake, clock)
    delivery = Delivery("run-1", 1)
    scheduler.schedule(delivery)
    scheduler.schedule(delivery)  # AlreadyExists from the service: success
    scheduler.schedule(Delivery("run-1", 1))
    assert len(fake.requests) == 3
    assert list(fake.tasks) == [f"{QUEUE}/tasks/{delivery.name}"]
    scheduler.schedule(Delivery("run-1", 2))
    assert len(fake.tasks) == 2


def test_a_due_or_past_delivery_is_scheduled_now(fake: FakeCloudTasks, clock: FakeClock) -> None:
    scheduler = scheduler_for(fake, clock)
    scheduler.schedule(Delivery("run-1", 1, due_at=0))
    scheduler.schedule(Delivery("run-1", 2, due_at=clock() - 60_000))
    for _, task in fake.requests:
        assert "schedule_time" not in task  # unset: Cloud Tasks runs it now


def test_a_ninety_day_timer_is_a_chain_of_deliveries_within_the_horizon(
    fake: FakeCloudTasks, clock: FakeClock
) -> None:
    scheduler = scheduler_for(fake, clock)
    due_at = clock() + 90 * DAY_MS
    hop = 0
    while True:
        scheduler.schedule(Delivery("timer", 4, due_at=due_at, hop=hop))
        scheduled = _ms(fake.requests[-1][1].schedule_time)
        assert scheduled <= clock() + scheduler.max_delay_ms
        if scheduled == due_at:
            break
        assert scheduled == clock() + 29 * DAY_MS
        clock.advance(scheduled - clock())  # the link arrives early: the next hop follows
        hop += 1
    assert hop == 3
    assert len(fake.tasks) == 4  # every hop has a name of its own


def test_the_delay_cap_cannot_exceed_the_service_horizon(
    fake: FakeCloudTasks, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="30 days"):
        scheduler_for(fake, clock, max_delay_ms=31 * DAY_MS)
    at_limit = scheduler_for(fake, clock, max_delay_ms=MAX_SCHEDULE_AHEAD_MS)
    at_limit.schedule(Delivery("far", 1, due_at=clock() + 365 * DAY_MS))
    assert len(fake.tasks) == 1


def test_oidc_token_and_dispatch_deadline(fake: FakeCloudTasks, clock: FakeClock) -> None:
    scheduler = scheduler_for(
        fake,
        clock,
        service_account_email="tasks@demo-test.iam.gserviceaccount.com",
        audience="https://run.example",
        dispatch_deadline_s=120,
    )
    scheduler.schedule(Delivery("run-1", 1))
    task = fake.requests[-1][1]
    token = task.http_request.oidc_token
    assert token.service_account_email == "tasks@demo-test.iam.gserviceaccount.com"
    assert token.audience == "https://run.example"
    assert task.dispatch_deadline.total_seconds() == 120

    without_audience = scheduler_for(fake, clock, service_account_email="sa@x.iam")
    without_audience.schedule(Delivery("run-1", 2))
    token = fake.requests[-1][1].http_request.oidc_token
    assert token.service_account_email == "sa@x.iam"
    assert token.audience == ""  # Cloud Tasks then uses the URL

    anonymous = scheduler_for(fake, clock)
    anonymous.schedule(Delivery("run-1", 3))
    assert "oidc_token" not in fake.requests[-1][1].http_request
    with pytest.raises(ValueError, match="service_account_email"):
        scheduler_for(fake, clock, audience="https://run.example")


@pytest.mark.parametrize(("asked", "sent"), [(1, 15), (15, 15), (60, 60), (7200, 1800)])
def test_dispatch_deadline_is_clamped_to_what_the_service_accepts(
    fake: FakeCloudTasks, clock: FakeClock, asked: float, sent: float
) -> None:
    assert clamp_dispatch_deadline(asked) == sent
    scheduler_for(fake, clock, dispatch_deadline_s=asked).schedule(Delivery("r", int(asked)))
    assert fake.requests[-1][1].dispatch_deadline.total_seconds() == sent
    assert len(fake.tasks) == 1  # accepted by the service's rules


def test_other_errors_propagate_so_the_caller_retries(
    fake: FakeCloudTasks, clock: FakeClock
) -> None:
    fake.fail_with = google_error(exceptions.ServiceUnavailable, "try again")
    with pytest.raises(TransientError, match="did not accept the delivery of run-1 v1"):
        scheduler_for(fake, clock).schedule(Delivery("run-1", 1))
    fake.fail_with = google_error(exceptions.PermissionDenied, "no enqueuer role")
    with pytest.raises(exceptions.PermissionDenied):  # a configuration error: not retryable
        scheduler_for(fake, clock).schedule(Delivery("run-1", 1))
