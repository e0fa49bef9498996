"""A Cloud Tasks client that behaves like the documented service, not like the emulator.

The emulator is kinder than the service: it accepts a task name twice and a
``schedule_time`` beyond 30 days, which hides exactly the failures a scheduler must
handle. This fake follows Google's documentation instead (CreateTaskRequest, Task,
RetryConfig), on a clock the test moves:

* A task name is unique: creating it while the task is in the queue, or for about an hour
  (:data:`NAME_REUSE_MS`) after the task completed, was deleted, or was dropped after its
  last retry, answers ``ALREADY_EXISTS``.
* ``schedule_time`` more than 30 days ahead answers ``INVALID_ARGUMENT``; an unset or past
  one means "now". ``dispatch_deadline`` outside 15 s - 30 min answers ``INVALID_ARGUMENT``.
* Names are ``{queue}/tasks/{id}``, the id of letters, digits, ``-`` and ``_``, at most
  500 characters; an unnamed task gets a generated name. Another queue is ``NOT_FOUND``.
* :meth:`FakeCloudTasks.dispatch_due` attempts every task whose time has come by calling
  a handler: returning is a 2xx (the task is done and deleted), raising is a failure,
  retried after the queue's backoff (``min_backoff`` doubled ``max_doublings`` times, then
  growing linearly, capped at ``max_backoff``) until both ``max_attempts`` and
  ``max_retry_duration`` are reached; then the task is deleted.
* ``get_task`` and ``delete_task`` (``NOT_FOUND`` for a task not in the queue).
* An outage: while :attr:`FakeCloudTasks.unavailable` is set, every call answers
  ``UNAVAILABLE`` and changes nothing.

* The dispatch deadline (``dispatch_deadline``, 10 minutes when unset): an attempt whose
  handler returns after it (the test's clock moved on meanwhile) counts as failed, whatever
  it answered, and the task is retried; while an attempt runs past its deadline, the next
  attempt is due at deadline + backoff, so a handler that calls :meth:`dispatch_due`
  again from inside (as a second instance would) runs two attempts of one task at once.

Not modelled: rate limits and throttling on 429/503, paused queues, parallel dispatch of
different tasks.
"""

from __future__ import annotations

import datetime
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2

from tests.support.google_errors import google_error

DAY_MS = 24 * 3600 * 1000
MAX_SCHEDULE_AHEAD_MS = 30 * DAY_MS
"""The service refuses a ``schedule_time`` further ahead than this."""
NAME_REUSE_MS = 3600 * 1000
"""How long a name stays taken after its task ran or was deleted ("about one hour")."""
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")


@dataclass(frozen=True)
class RetryConfig:
    """A queue's retry settings, with the service's defaults."""

    max_attempts: int = 100
    """Attempts in all (the first included); -1 is unlimited."""
    max_retry_duration_ms: int = 0
    """How long after the first attempt retries may go on; 0 is unlimited."""
    min_backoff_ms: int = 100
    max_backoff_ms: int = 3_600_000
    max_doublings: int = 16

    def backoff_ms(self, retry: int) -> int:
        """The wait before retry number ``retry`` (1 for the first retry).

        Google's example: min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300.
        """
        doubled = self.min_backoff_ms * 2 ** min(retry - 1, self.max_doublings)
        linear = (
            max(0, retry - 1 - self.max_doublings) * self.min_backoff_ms * 2**self.max_doublings
        )
        return int(min(self.max_backoff_ms, doubled + linear))

    def exhausted(self, attempts: int, first_attempt_at: int, now: int) -> bool:
        """Both limits reached: the task is deleted instead of retried."""
        attempts_done = self.max_attempts != -1 and attempts >= self.max_attempts
        age_done = (
            self.max_retry_duration_ms == 0 or now - first_attempt_at >= self.max_retry_duration_ms
        )
        return attempts_done and age_done


@dataclass(frozen=True)
class Attempt:
    """One dispatch of a task: when, which execution, and whether the handler succeeded."""

    name: str
    at: int
    execution: int
    succeeded: bool


@dataclass
class _Queued:
    task: tasks_v2.Task
    next_attempt_at: int
    order: int
    attempts: int = 0
    first_attempt_at: int = 0
    in_flight: int = 0


def _ms(task: tasks_v2.Task) -> int:
    stamp = tasks_v2.Task.pb(task).schedule_time
    return int(stamp.seconds) * 1000 + int(stamp.nanos) // 1_000_000


DEFAULT_DISPATCH_DEADLINE_MS = 10 * 60 * 1000
"""The dispatch deadline of an HTTP task that sets none (10 minutes)."""


def _deadline_ms(task: tasks_v2.Task) -> int:
    deadline = tasks_v2.Task.pb(task).dispatch_deadline
    if not deadline.ByteSize():
        return DEFAULT_DISPATCH_DEADLINE_MS
    return int(deadline.seconds) * 1000 + int(deadline.nanos) // 1_000_000


def _has_schedule_time(task: tasks_v2.Task) -> bool:
    return bool(tasks_v2.Task.pb(task).HasField("schedule_time"))


@dataclass
class FakeCloudTasks:
    """One Cloud Tasks queue, with ``create_task``, ``get_task`` and ``delete_task``.

    Args:
        queue_path: ``projects/P/locations/L/queues/Q``, the only queue that exists.
        clock: Epoch milliseconds (a fake clock the test moves).
        retry: The queue's retry settings.
    """

    queue_path: str
    clock: Callable[[], int]
    retry: RetryConfig = field(default_factory=RetryConfig)
    requests: list[tasks_v2.Task] = field(default_factory=list)
    """Every ``create_task`` request, accepted or not."""
    attempts: list[Attempt] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Names of tasks deleted after their last failed attempt."""
    unavailable: bool = False
    """An outage: every call answers ``UNAVAILABLE`` while set."""
    _queued: dict[str, _Queued] = field(default_factory=dict)
    _taken_until: dict[str, int] = field(default_factory=dict)
    _order: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the client's methods ---------------------------------------------------------------

    def create_task(self, *, parent: str, task: tasks_v2.Task, **_: Any) -> tasks_v2.Task:
        """Queue a copy of ``task``, by the service's rules; returns it as stored."""
        stored = tasks_v2.Task(task)
        with self._lock:
            self.requests.append(tasks_v2.Task(task))
            now = self.clock()
            self._check_available()
            self._check_queue(parent)
            if not stored.name:
                stored.name = f"{parent}/tasks/{uuid.uuid4().hex}"
            prefix, _sep, task_id = stored.name.rpartition("/tasks/")
            if prefix != parent or TASK_ID.fullmatch(task_id) is None:
                raise google_error(
                    exceptions.InvalidArgument, f"invalid task name {stored.name!r} for {parent}"
                )
            deadline = tasks_v2.Task.pb(stored).dispatch_deadline
            if deadline.ByteSize() and not 15 <= deadline.seconds + deadline.nanos / 1e9 <= 1800:
                raise google_error(
                    exceptions.InvalidArgument, "dispatch_deadline must be between 15s and 30m"
                )
            if _has_schedule_time(stored):
                if _ms(stored) > now + MAX_SCHEDULE_AHEAD_MS:
                    raise google_error(
                        exceptions.InvalidArgument,
                        "The Task.scheduleTime is too far in the future. Specify a "
                        "Task.scheduleTime that is less than 30 days in the future.",
                    )
            else:
                stored.schedule_time = _timestamp(now)
            if stored.name in self._queued or self._taken_until.get(stored.name, now) > now:
                raise google_error(exceptions.AlreadyExists, "Requested entity already exists")
            self._order += 1
            self._queued[stored.name] = _Queued(stored, max(_ms(stored), now), self._order)
            return tasks_v2.Task(stored)

    def get_task(self, *, name: str, **_: Any) -> tasks_v2.Task:
        with self._lock:
            self._check_available()
            queued = self._queued.get(name)
            if queued is None:
                raise google_error(exceptions.NotFound, f"task {name} not found")
            return tasks_v2.Task(queued.task)

    def delete_task(self, *, name: str, **_: Any) -> None:
        with self._lock:
            self._check_available()
            if name not in self._queued:
                raise google_error(exceptions.NotFound, f"task {name} not found")
            self._remove(name, self.clock())

    # -- the queue's side: dispatching ------------------------------------------------------

    def dispatch_due(
        self, handler: Callable[[tasks_v2.Task], object], *, limit: int | None = None
    ) -> int:
        """Attempt, one at a time, every task whose time has come at ``clock()``.

        Tasks the handler creates are attempted too once due. Returns how many attempts
        were made (``limit`` bounds them).
        """
        made = 0
        while limit is None or made < limit:
            with self._lock:
                now = self.clock()
                ready = [
                    q for q in self._queued.values() if q.next_attempt_at <= now and q.in_flight < 2
                ]
                if not ready:
                    return made
                queued = min(ready, key=lambda q: (q.next_attempt_at, q.order))
                queued.attempts += 1
                attempt = queued.attempts
                if attempt == 1:
                    queued.first_attempt_at = now
                started = now
                deadline = _deadline_ms(queued.task)
                # Until this attempt answers, the service retries it only once its deadline
                # has passed (plus the backoff): then the two attempts overlap.
                queued.next_attempt_at = started + deadline + self.retry.backoff_ms(attempt)
                queued.in_flight += 1
                task = tasks_v2.Task(queued.task)
            made += 1
            try:
                handler(task)
            except Exception:
                succeeded = False
            else:
                succeeded = True
            with self._lock:
                now = self.clock()
                queued.in_flight -= 1
                late = now - started > deadline
                self.attempts.append(Attempt(task.name, now, attempt, succeeded and not late))
                if self._queued.get(task.name) is not queued:
                    continue  # deleted (or answered by another attempt) while it ran
                if late:
                    # The service stopped waiting at the deadline and counted a failure; this
                    # answer arrives too late to count. The retry stays as planned.
                    if self.retry.exhausted(attempt, queued.first_attempt_at, now):
                        self.dropped.append(task.name)
                        self._remove(task.name, now)
                elif succeeded:
                    self._remove(task.name, now)
                elif self.retry.exhausted(attempt, queued.first_attempt_at, now):
                    self.dropped.append(task.name)
                    self._remove(task.name, now)
                else:
                    queued.next_attempt_at = now + self.retry.backoff_ms(attempt)
        return made

    def next_dispatch_at(self) -> int | None:
        """When the next attempt is due, or ``None`` if the queue is empty."""
        with self._lock:
            return min((q.next_attempt_at for q in self._queued.values()), default=None)

    def queued(self) -> list[tasks_v2.Task]:
        """The tasks in the queue, in creation order."""
        with self._lock:
            entries = sorted(self._queued.values(), key=lambda q: q.order)
            return [tasks_v2.Task(q.task) for q in entries]

    # -- internals --------------------------------------------------------------------------

    def _check_available(self) -> None:
        if self.unavailable:
            raise google_error(exceptions.ServiceUnavailable, "The service is unavailable")

    def _check_queue(self, parent: str) -> None:
        if parent != self.queue_path:
            raise google_error(exceptions.NotFound, f"queue {parent} does not exist")

    def _remove(self, name: str, now: int) -> None:
        del self._queued[name]
        self._taken_until[name] = now + NAME_REUSE_MS


def _timestamp(epoch_ms: int) -> datetime.datetime:
    """``epoch_ms`` as an aware datetime, exactly (proto-plus makes it a Timestamp)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=millis * 1000)


def schedule_time_ms(task: tasks_v2.Task) -> int | None:
    """The task's ``schedule_time`` in epoch milliseconds, or ``None`` if unset."""
    return _ms(task) if _has_schedule_time(task) else None


__all__ = [
    "MAX_SCHEDULE_AHEAD_MS",
    "NAME_REUSE_MS",
    "Attempt",
    "FakeCloudTasks",
    "RetryConfig",
    "schedule_time_ms",
]
