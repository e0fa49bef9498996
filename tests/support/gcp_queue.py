"""A :class:`~tests.support.faults.DeliveryQueue` fed by the Cloud Tasks emulator.

The fault driver reads pending deliveries from a queue, decides when (and how often, and in
which order) to deliver them, and acknowledges those it processed. On Google Cloud the
deliveries come from Cloud Tasks as HTTP requests. :class:`EmulatorQueue` keeps that path
real: the :class:`~refluxo.backends.gcp.cloud_tasks.CloudTasksScheduler` creates tasks on the
emulator over gRPC, the emulator POSTs each one to a receiver on 127.0.0.1, and the
receiver decodes the body ``{"runId","version","dueAt","hop"}`` into a ``Delivery``.

What stands in for Cloud Tasks' own bookkeeping, and why:

* Redelivery. The receiver answers 200 as soon as a delivery is in the queue (a handoff),
  and the queue keeps it until the driver acknowledges it, returning it from every
  :meth:`due` until then, as Cloud Tasks redelivers a task whose handler failed. Holding
  the HTTP request open instead would serialise everything: the emulator sends one request
  at a time per queue.
* Time. The driver's clock is a ``FakeClock`` it advances; the emulator's is the wall
  clock. So the scheduler is built to give no task a ``schedule_time`` (see
  :func:`immediate_clock`): the emulator delivers every task at once, and this queue holds
  a delivery until the fake clock reaches the ``dueAt`` its body carries. The emulator's
  scheduling stays out of the timing path; the retry and timer logic is the dispatcher's.
* In flight. A task created but not yet POSTed is pending as far as Cloud Tasks is
  concerned. The queue counts tasks created (it is the scheduler's ``create_task``) and
  deliveries received, and :meth:`next_due_at` waits until none is in flight before it
  answers, so the driver neither advances time past a delivery still on its way nor
  stops while one is.

:class:`SigningRelay` is the other way deliveries leave the emulator in these tests: to a
function under functions-framework, signed. The emulator ignores a task's ``oidc_token``
(it sends the task's own headers and nothing else), so the step URL the functions give
their tasks is a relay's, which forwards each request to the function as Cloud Tasks would
send it: the same method, path, body and ``X-CloudTasks-*`` headers, plus
``Authorization: Bearer`` with a freshly minted identity token.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from google.cloud import tasks_v2

from refluxo.runtime.ports import Delivery
from tests.support.emulators import local_urlopen
from tests.support.receiver import BackgroundServer, QuietHandler

END_OF_TIME_MS = 2**62
"""A "now" no due time ever exceeds: see :func:`immediate_clock`."""


def immediate_clock() -> int:
    """The scheduler's clock for the fake-time driver: every due time is in its past.

    ``CloudTasksScheduler`` sets a task's ``schedule_time`` only for a due time after its
    clock's now; with this clock no task gets one, and the emulator delivers at once. The
    due time still travels in the body, and :class:`EmulatorQueue` holds the delivery until
    the driver's fake clock reaches it.
    """
    return END_OF_TIME_MS


@dataclass
class QueueStats:
    """What crossed the emulator: tasks created, requests received, bodies refused."""

    created: int = 0
    received: int = 0
    rejected: list[str] = field(default_factory=list)


class EmulatorQueue:
    """Deliveries POSTed by the Cloud Tasks emulator, pending until acknowledged.

    Use it as the ``client`` of every ``CloudTasksScheduler`` whose tasks the driver must
    see (it forwards ``create_task`` to the real client and counts it), and point their
    ``url`` at :attr:`url`. Start and stop it as a context manager.

    Args:
        client: The tasks client bound to the emulator.
        in_flight_timeout: Seconds :meth:`next_due_at` waits for tasks created but not yet
            delivered before it fails (the emulator polls its queue every 0.1 s).
    """

    def __init__(self, client: tasks_v2.CloudTasksClient, *, in_flight_timeout: float = 30.0):
        self.client = client
        self.in_flight_timeout = in_flight_timeout
        self.stats = QueueStats()
        self._changed = threading.Condition()
        self._pending: list[Delivery] = []
        queue = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = 200 if queue._receive(body) else 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = BackgroundServer(Handler)

    @property
    def url(self) -> str:
        return f"{self._server.origin}/tasks/step"

    # -- the scheduler's side: a TaskCreator that counts ---------------------------------

    def get_task(self, *, name: str) -> Any:
        """Passed to the emulator (which refuses no name twice, so it is never asked)."""
        return self.client.get_task(name=name)

    def create_task(self, *, parent: str, task: tasks_v2.Task) -> Any:
        """Create the task on the emulator; it is in flight until its request arrives.

        Counted before the call, so a delivery that arrives before the call returns is
        never mistaken for one nobody created.
        """
        with self._changed:
            self.stats.created += 1
        try:
            return self.client.create_task(parent=parent, task=task)
        except BaseException:
            with self._changed:
                self.stats.created -= 1
                self._changed.notify_all()
            raise

    # -- the emulator's side: HTTP deliveries -------------------------------------------

    def _receive(self, body: bytes) -> bool:
        try:
            loaded = json.loads(body)
            delivery = Delivery(
                run_id=str(loaded["runId"]),
                version=int(loaded["version"]),
                due_at=int(loaded.get("dueAt", 0)),
                hop=int(loaded.get("hop", 0)),
            )
        except (ValueError, KeyError, TypeError) as err:
            with self._changed:
                self.stats.rejected.append(f"{body[:200]!r}: {err}")
                self.stats.received += 1
                self._changed.notify_all()
            return False
        with self._changed:
            self._pending.append(delivery)
            self.stats.received += 1
            self._changed.notify_all()
        return True

    # -- the driver's side: DeliveryQueue ---------------------------------------------------

    def due(self, now: int) -> list[Delivery]:
        """Pending deliveries due at ``now``, in order of arrival."""
        with self._changed:
            return [delivery for delivery in self._pending if delivery.due_at <= now]

    def next_due_at(self) -> int | None:
        """The earliest due time pending once nothing is in flight; None if none is left."""
        deadline = time.monotonic() + self.in_flight_timeout
        with self._changed:
            while self.stats.received < self.stats.created:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.stats.created - self.stats.received} of {self.stats.created} "
                        f"tasks not delivered by the emulator within {self.in_flight_timeout} s"
                    )
                self._changed.wait(remaining)
            if not self._pending:
                return None
            return min(delivery.due_at for delivery in self._pending)

    def acknowledge(self, delivery: Delivery) -> None:
        """Done with ``delivery``: forget every pending copy of it.

        The emulator accepts the same task name twice (the service answers ALREADY_EXISTS),
        so two copies of one delivery can be pending; Cloud Tasks would hold one task per
        name, and acknowledging it settles both. A copy still in flight arrives later and
        is delivered again: a duplicate, which the dispatcher finds stale.
        """
        with self._changed:
            self._pending = [pending for pending in self._pending if pending != delivery]

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> EmulatorQueue:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()


# -- signing the emulator's deliveries ------------------------------------------------------

FORWARDED_HEADERS = frozenset({"content-type"})
"""Headers passed on as the emulator sent them (with every ``X-CloudTasks-*`` one)."""

USER_AGENT = "Google-Cloud-Tasks"


@dataclass(frozen=True)
class Forwarded:
    """One delivery the relay passed on: its body and the function's answer."""

    body: bytes
    status: int


def removed_signature(token: str) -> str:
    """``token`` as Cloud Run hands it to a function that requires authentication, once
    its IAM check passed: the signature replaced by ``SIGNATURE_REMOVED_BY_GOOGLE``."""
    return token.rpartition(".")[0] + ".SIGNATURE_REMOVED_BY_GOOGLE"


class SigningRelay:
    """Cloud Tasks' side of an authenticated delivery, for the emulator's requests.

    Give the functions :attr:`url` as their step URL (``REFLUXO_STEP_URL``); set
    :attr:`target` to the function's base URL once it runs. Every request the emulator
    POSTs here is sent on to ``target`` + its path with ``Authorization: Bearer <mint()>``
    (any ``Authorization`` the emulator sent is dropped), and the function's status and
    body are the emulator's answer, so its retries follow the function's answers.

    :meth:`holding` keeps the deliveries it is asked for from going on until the block
    ends (the emulator sends one request at a time per queue, so every later one waits
    too): a test can replay a held delivery with tokens of its own before the real one
    goes through.

    With ``through_iam``, the relay is Cloud Run's front end too, as in front of a function
    that requires authentication: the token it minted passes the IAM check (it is the
    invoker's, for the audience) and goes on with its signature removed.

    Args:
        mint: A fresh identity token for each delivery.
        through_iam: Hand the token on as Cloud Run's IAM does (signature removed).
        timeout: Seconds to wait for the function's answer.
    """

    def __init__(
        self, mint: Callable[[], str], *, through_iam: bool = False, timeout: float = 120.0
    ) -> None:
        self.mint = mint
        self.through_iam = through_iam
        self.timeout = timeout
        self.target: str | None = None
        self.forwarded: list[Forwarded] = []
        self._held: list[bytes] = []
        self._changed = threading.Condition()
        self._open = threading.Event()
        self._open.set()
        self._holds: Callable[[bytes], bool] = lambda body: False
        relay = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                relay._hold(body)
                status, answer = relay._forward(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = BackgroundServer(Handler)

    @property
    def origin(self) -> str:
        """The relay's base URL: the deployment's OIDC audience, as a function's URL is."""
        return self._server.origin

    @property
    def url(self) -> str:
        return f"{self.origin}/tasks/step"

    def _hold(self, body: bytes) -> None:
        with self._changed:
            if self._open.is_set() or not self._holds(body):
                return
            self._held.append(body)
            self._changed.notify_all()
        self._open.wait()

    def _forward(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        if self.target is None:
            return 503, b'{"error": {"code": "unavailable", "message": "no target yet"}}'
        request = urllib.request.Request(self.target + path, data=body, method="POST")
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in FORWARDED_HEADERS or lowered.startswith("x-cloudtasks-"):
                request.add_header(name, value)
        request.add_header("User-Agent", USER_AGENT)
        token = self.mint()
        request.add_header(
            "Authorization", f"Bearer {removed_signature(token) if self.through_iam else token}"
        )
        try:
            with local_urlopen(request, timeout=self.timeout) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, answer = err.code, err.read()
        except OSError as err:  # the function is down: Cloud Tasks sees a failure too
            status, answer = 502, json.dumps({"relay": str(err)}).encode()
        with self._changed:
            self.forwarded.append(Forwarded(body, status))
            self._changed.notify_all()
        return status, answer

    @contextmanager
    def holding(self, matches: Callable[[bytes], bool]) -> Iterator[Callable[[float], bytes]]:
        """Hold the deliveries whose body ``matches`` accepts until the block ends; yields
        ``wait(timeout)``, which returns the first one held, once it arrives."""

        def wait(timeout: float) -> bytes:
            deadline = time.monotonic() + timeout
            with self._changed:
                while not self._held:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(f"no matching delivery arrived within {timeout} s")
                    self._changed.wait(remaining)
                return self._held[0]

        with self._changed:
            self._holds = matches
            self._open.clear()
        try:
            yield wait
        finally:
            with self._changed:
                self._held.clear()
                self._open.set()

    def wait_forwarded(self, matches: Callable[[Forwarded], bool], timeout: float) -> Forwarded:
        """The first delivery passed on that ``matches`` accepts, once there is one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [done for done in self.forwarded if matches(done)]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching delivery forwarded within {timeout} s")
                self._changed.wait(remaining)

    def __enter__(self) -> SigningRelay:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._open.set()
        self._server.stop()


def delivery_of(body: bytes) -> dict[str, Any] | None:
    """A task body as JSON (``runId``, ``version``, ``dueAt``, ``hop``), None if it is not."""
    try:
        loaded = json.loads(body)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


__all__ = [
    "END_OF_TIME_MS",
    "EmulatorQueue",
    "Forwarded",
    "QueueStats",
    "SigningRelay",
    "delivery_of",
    "immediate_clock",
]
