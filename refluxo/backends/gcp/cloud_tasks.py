"""The :class:`~refluxo.runtime.ports.Scheduler` on Google Cloud Tasks.

One HTTP task per delivery: ``POST url`` with the JSON body
``{"runId": ..., "version": ..., "dueAt": ..., "hop": ...}``, named
``{queue_path}/tasks/{delivery.name}``. Guarantees and why:

* Idempotent, and never fooled by a tombstone: the same delivery always has the same name,
  and Cloud Tasks refuses a second task with a name it has seen with ``ALREADY_EXISTS``. But
  it does so for about an hour *after* the first task ran, was deleted, or was dropped once
  its retries were spent: then nothing is queued although the name is taken. So on
  ``ALREADY_EXISTS`` the scheduler looks the task up: queued means scheduled; gone means a
  tombstone, and the delivery is created again under the next *generation* of its name
  (``<name>-1``, ``<name>-2``...), which is just as deterministic, so two schedulers racing
  on the same tombstone still create one task. A duplicate that slips through is harmless:
  the dispatcher finds its version stale and commits nothing.
* No hotspot: names are hashes (see :mod:`refluxo.runtime.ids`); Cloud Tasks shards
  named tasks by name, and sequential names pile onto one shard.
* Long delays are chained: Cloud Tasks refuses a ``schedule_time`` more than 30 days
  ahead, so a task is scheduled at most ``max_delay_ms`` ahead (29 days by default). The
  dispatcher re-schedules a delivery that arrives before its ``dueAt`` as the next
  ``hop``, so a 90-day timer is a chain of four tasks.
* Authenticated: with ``service_account_email`` the task carries an OIDC token for it
  (audience ``audience``, or the URL when None), which Cloud Run / Cloud Functions verify.
* Bounded: ``dispatch_deadline`` is how long Cloud Tasks waits for the handler before it
  retries; the service accepts 15 s to 30 min, so the value is clamped to that range.

Delivery is at least once. Errors other than ``ALREADY_EXISTS`` propagate: the caller (the
dispatcher inside a delivery that is itself retried) tries again.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped, unused-ignore]
from google.api_core import exceptions as google_exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from refluxo.errors import TransientError
from refluxo.runtime.ports import Delivery
from refluxo.steps import Clock, wall_clock_ms

logger = logging.getLogger("refluxo.cloud_tasks")

MAX_SCHEDULE_AHEAD_MS = 30 * 24 * 3600 * 1000
"""Cloud Tasks refuses a ``schedule_time`` further ahead than this."""

DEFAULT_MAX_DELAY_MS = 29 * 24 * 3600 * 1000
"""How far ahead a task is scheduled at most: a day of margin under the service's limit."""

MIN_DISPATCH_DEADLINE_S = 15.0
MAX_DISPATCH_DEADLINE_S = 1800.0


MAX_GENERATIONS = 16
"""Names tried for one delivery before giving up (each taken one is a recent tombstone)."""


class TaskCreator(Protocol):
    """The methods of ``tasks_v2.CloudTasksClient`` the scheduler uses."""

    def create_task(self, *, parent: str, task: tasks_v2.Task) -> Any: ...

    def get_task(self, *, name: str) -> Any: ...


def clamp_dispatch_deadline(seconds: float) -> float:
    """``seconds`` within the range Cloud Tasks accepts for HTTP targets (15 s to 30 min)."""
    return min(MAX_DISPATCH_DEADLINE_S, max(MIN_DISPATCH_DEADLINE_S, float(seconds)))


def _timestamp(epoch_ms: int) -> datetime.datetime:
    """``epoch_ms`` as an aware datetime (proto-plus turns it into a Timestamp, exactly)."""
    return datetime.datetime.fromtimestamp(epoch_ms // 1000, datetime.UTC).replace(
        microsecond=(epoch_ms % 1000) * 1000
    )


def delivery_body(delivery: Delivery) -> bytes:
    """The JSON body a task POSTs: what the HTTP handler turns back into a Delivery."""
    body = {
        "runId": delivery.run_id,
        "version": delivery.version,
        "dueAt": delivery.due_at,
        "hop": delivery.hop,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class CloudTasksScheduler:
    """Schedules each delivery as one named HTTP task on a Cloud Tasks queue.

    Args:
        client: A ``tasks_v2.CloudTasksClient`` (see :func:`tasks_client` and
            :func:`tasks_client_for_emulator`), or anything with its ``create_task``.
        queue_path: ``projects/P/locations/L/queues/Q``.
        url: The handler's URL; every task POSTs there.
        service_account_email: Identity of the OIDC token the task carries; None sends no
            token (the emulator, or a handler that does not authenticate).
        audience: The token's audience; None lets Cloud Tasks use ``url``.
        dispatch_deadline_s: How long Cloud Tasks waits for the handler (clamped to
            15 s - 30 min).
        clock: Epoch milliseconds; "now" for due times in the past and the delay cap.
        max_delay_ms: The furthest ahead a task is scheduled (at most 30 days).
    """

    def __init__(
        self,
        client: TaskCreator,
        *,
        queue_path: str,
        url: str,
        service_account_email: str | None = None,
        audience: str | None = None,
        dispatch_deadline_s: float = 60,
        clock: Clock = wall_clock_ms,
        max_delay_ms: int = DEFAULT_MAX_DELAY_MS,
    ) -> None:
        if not 0 < max_delay_ms <= MAX_SCHEDULE_AHEAD_MS:
            raise ValueError(f"max_delay_ms must be in (0, {MAX_SCHEDULE_AHEAD_MS}] (30 days)")
        if audience is not None and service_account_email is None:
            raise ValueError("an OIDC audience needs a service_account_email")
        self.client = client
        self.queue_path = queue_path
        self.url = url
        self.service_account_email = service_account_email
        self.audience = audience
        self.dispatch_deadline_s = clamp_dispatch_deadline(dispatch_deadline_s)
        self.max_delay_ms = max_delay_ms
        self._clock = clock

    def task_name(self, delivery: Delivery, generation: int = 0) -> str:
        """The task's full name: the delivery's hash under the queue, then its generation."""
        suffix = f"-{generation}" if generation else ""
        return f"{self.queue_path}/tasks/{delivery.name}{suffix}"

    def task_for(self, delivery: Delivery, generation: int = 0) -> tasks_v2.Task:
        """The task that delivers ``delivery``, as :meth:`schedule` creates it."""
        http_request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=self.url,
            headers={"Content-Type": "application/json"},
            body=delivery_body(delivery),
        )
        if self.service_account_email is not None:
            token = tasks_v2.OidcToken(service_account_email=self.service_account_email)
            if self.audience is not None:
                token.audience = self.audience
            http_request.oidc_token = token
        task = tasks_v2.Task(
            name=self.task_name(delivery, generation),
            http_request=http_request,
            dispatch_deadline=datetime.timedelta(seconds=self.dispatch_deadline_s),
        )
        now = self._clock()
        if delivery.due_at > now:
            # Unset means "now" to Cloud Tasks, which avoids trusting our clock for it.
            task.schedule_time = _timestamp(min(delivery.due_at, now + self.max_delay_ms))
        return task

    def schedule(self, delivery: Delivery) -> None:
        """Create the delivery's task, unless one of its names is still queued.

        Raises:
            TransientError: Cloud Tasks failed for a reason that may pass, or every
                generation of the name is a recent tombstone.
        """
        for generation in range(MAX_GENERATIONS):
            task = self.task_for(delivery, generation)
            try:
                self.client.create_task(parent=self.queue_path, task=task)
                return
            except google_exceptions.AlreadyExists:
                if self._queued(task.name, delivery):
                    return
                continue  # a tombstone: the task ran or was dropped; try the next name
            except _TRANSIENT as err:
                raise self._unavailable(delivery, err) from err
        raise TransientError(
            f"Cloud Tasks holds {MAX_GENERATIONS} recent tombstones for the delivery of "
            f"{delivery.run_id} v{delivery.version}; retry later"
        )

    def _queued(self, name: str, delivery: Delivery) -> bool:
        """Whether the task ``name`` is in the queue now (not a tombstone)."""
        try:
            self.client.get_task(name=name)
        except google_exceptions.NotFound:
            return False
        except google_exceptions.PermissionDenied:
            # Without cloudtasks.tasks.get the answer is unknown. Taking the name for a
            # tombstone costs at most a duplicate task (its delivery finds the run's
            # version stale); taking it for a queued task could leave the run stalled.
            logger.warning(
                "Cloud Tasks refused GetTask on %s (grant roles/cloudtasks.viewer on the "
                "queue); the delivery of %s v%s is scheduled under a fresh name",
                name,
                delivery.run_id,
                delivery.version,
            )
            return False
        except _TRANSIENT as err:
            raise self._unavailable(delivery, err) from err
        return True

    @staticmethod
    def _unavailable(delivery: Delivery, err: BaseException) -> TransientError:
        return TransientError(
            f"Cloud Tasks did not accept the delivery of {delivery.run_id} "
            f"v{delivery.version}: {err}"
        )


_TRANSIENT = (
    google_exceptions.ServiceUnavailable,
    google_exceptions.DeadlineExceeded,
    google_exceptions.InternalServerError,
    google_exceptions.Aborted,
    google_exceptions.TooManyRequests,
    google_exceptions.RetryError,
)
"""Errors worth retrying later; others (a bad queue path, missing permission) propagate."""


def tasks_client(**options: Any) -> tasks_v2.CloudTasksClient:
    """A client of the real service, with Application Default Credentials unless given.

    ``options`` go to ``tasks_v2.CloudTasksClient`` (``credentials``, ``client_options``).
    Create one per process and share it: it holds a gRPC channel.
    """
    return tasks_v2.CloudTasksClient(**options)


def tasks_client_for_emulator(host_port: str) -> tasks_v2.CloudTasksClient:
    """A client of a local Cloud Tasks emulator at ``host_port`` (insecure gRPC, no auth)."""
    channel = grpc.insecure_channel(host_port)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


__all__ = [
    "DEFAULT_MAX_DELAY_MS",
    "MAX_SCHEDULE_AHEAD_MS",
    "CloudTasksScheduler",
    "TaskCreator",
    "clamp_dispatch_deadline",
    "delivery_body",
    "tasks_client",
    "tasks_client_for_emulator",
]
