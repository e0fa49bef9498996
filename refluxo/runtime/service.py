"""Run operations shared by the HTTP API, the Pub/Sub trigger and the CLI.

Each operation is one optimistic-lock commit plus, when the run has something to do, one
scheduled delivery. Nothing here executes a node: the dispatcher does, on delivery.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from refluxo.errors import TransientError
from refluxo.metadata import CANCELLED_REASON
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.app import App
from refluxo.runtime.dispatcher import DeliveryResult, Dispatcher
from refluxo.runtime.due import expected_at
from refluxo.runtime.errors import BadRequest, RunConflict, RunNotFound
from refluxo.runtime.events_log import log_event
from refluxo.runtime.ids import check_run_id
from refluxo.runtime.json_values import check_json_value
from refluxo.runtime.links import is_child_run_id, waiting_for_children
from refluxo.runtime.loop import EventLoopThread
from refluxo.runtime.ports import (
    Delivery,
    Payload,
    RetentionSweeper,
    RunPage,
    RunRecord,
    TimelineEntry,
)

SENT_AT_SKEW_MS: Final = 250
"""How far the clock that stamps a resume's sending (Pub/Sub's) may be behind the runtime's:
a resume sent up to this long before the run paused is still taken as sent to that pause.
Small, as a copy of a resume delivered after a pause that began within it answers that
pause too (Google's clocks agree to milliseconds); ``expected_version`` leaves no window."""

DEFAULT_RECONCILE_GRACE_MS: Final = 600_000
"""How far past its expected time a run's next step must be before the reconciler schedules
it again, unless the deployment says otherwise (``REFLUXO_RECONCILE_GRACE_S``)."""

RECONCILE_PAGE: Final = 100
"""Runs read from the store per query while reconciling."""

RECONCILE_EMPTY_PAGES: Final = 10
"""Empty pages (a store whose coarser copy of the time matched only runs not yet overdue)
one reconcile call reads before it stops and answers the cursor, so its work stays bounded
even though they examine no run."""


logger = logging.getLogger("refluxo.service")


@dataclass(frozen=True, slots=True)
class Started:
    record: RunRecord
    created: bool


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconcile pass did.

    ``examined``: the overdue runs it looked at; ``rescheduled``: those whose next step it
    scheduled again (each logged as ``run_stalled``); ``next_cursor``: where the next pass
    continues when it stopped at its limit (None: every overdue run was examined).
    """

    examined: int
    rescheduled: int
    next_cursor: str | None


def _is_retry_of_resume(record: RunRecord, payload: Any, expected_version: int | None) -> bool:
    """The run was resumed with this very payload and has not run the step yet."""
    return (
        record.status == SnapshotStatus.ACTIVE
        and record.pending is not None
        and record.pending.source == "resume"
        and record.pending.value == payload
        and (expected_version is None or record.version == expected_version + 1)
    )


class RunService:
    """Start, resume, cancel, inspect and deliver runs of one app.

    Args:
        dispatcher: executes deliveries.
        loop: the event loop deliveries run on (one per runtime; created if not given).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        loop: EventLoopThread | None = None,
        reconcile_grace_ms: int = DEFAULT_RECONCILE_GRACE_MS,
    ) -> None:
        self.dispatcher = dispatcher
        self.app: App = dispatcher.app
        self.store = dispatcher.store
        self.scheduler = dispatcher.scheduler
        self.loop = loop or EventLoopThread()
        self.reconcile_grace_ms = reconcile_grace_ms
        """The deployment's grace period, for reconcile requests that do not give one."""

    def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Execute ``delivery`` in this thread (what awaits on the runtime's event loop)
        and return its outcome.

        For synchronous callers (HTTP request threads, scheduler workers). Raises
        :class:`~refluxo.errors.TransientError` when the delivery must be retried.
        """
        return self.loop.run_in_place(self.dispatcher.deliver(delivery))

    def close(self) -> None:
        """Stop the event loop (after the deliveries in progress)."""
        self.loop.close()

    def start(self, workflow: str, input: Any = None, run_id: str | None = None) -> Started:
        """Start ``workflow`` with ``input`` (the first node's ``external_payload``).

        With a ``run_id``, starting is idempotent: the same id, workflow and input return the
        existing run (and make sure it is scheduled); a different workflow or input conflicts.
        """
        if run_id is not None:
            check_run_id(run_id)
            if is_child_run_id(run_id):
                raise RunConflict(
                    f"runId {run_id!r} has the shape of a child run's id ('<runId>.<n>.<n>' "
                    "or 'child-' and 40 hex digits), which the runtime reserves: choose another"
                )
        check_json_value(input, "the input")
        spec = self.app.get_workflow(workflow)
        if run_id is not None:
            existing = self.store.load_run(run_id)
            if existing is not None:  # answered without writing anything
                return self._already_started(existing, workflow, input)
        run_id = run_id or uuid.uuid4().hex
        self.store.put_definition(spec.version, spec.name, spec.wire)
        now = self.app.clock()
        snapshot = Snapshot(
            workflow_id=run_id,
            status=SnapshotStatus.ACTIVE,
            current_node_id=spec.start,
            version=0,
            last_started_at=now,
            total_execution_time=0,
        )
        record = RunRecord(
            run_id=run_id,
            workflow=spec.name,
            definition_version=spec.version,
            snapshot=snapshot,
            created_at=now,
            updated_at=now,
            input=input,
            pending=Payload(input),
        )
        first = Delivery(run_id, 0, 0)
        result = self.store.create_run(record, first_delivery=first)
        if not result.committed:
            assert result.record is not None
            return self._already_started(result.record, workflow, input)
        if not result.scheduled:
            self.scheduler.schedule(first)
        return Started(result.record or record, created=True)

    def _already_started(self, existing: RunRecord, workflow: str, input: Any) -> Started:
        if existing.workflow != workflow or existing.input != input:
            raise RunConflict(
                f"run {existing.run_id!r} already exists with a different workflow or input"
            )
        self.dispatcher.ensure_scheduled(existing)
        return Started(existing, created=False)

    def get(self, run_id: str) -> RunRecord:
        record = self.store.load_run(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r}")
        return record

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        return self.store.timeline(run_id, after_seq=after_seq, limit=limit)

    def list(
        self, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        return self.store.list_runs(status=status, limit=limit, cursor=cursor)

    def resume(
        self,
        run_id: str,
        payload: Any,
        expected_version: int | None = None,
        *,
        sent_at: int | None = None,
    ) -> RunRecord:
        """Resume a paused run: its paused node runs again with ``payload``.

        Raises :class:`RunConflict` if the run is not paused (or not at
        ``expected_version``, when given), so a payload meant for one pause can never reach
        another. Retrying a resume whose commit succeeded but whose reply (or scheduling)
        was lost is safe: while the payload is still waiting for its step, the same resume
        succeeds again and makes sure the step is scheduled.

        ``sent_at`` (epoch ms): when the resume was sent, such as a Pub/Sub message's
        publish time; used only without ``expected_version``, which says exactly which
        pause is meant. A run whose pause began later than that (by more than
        :data:`SENT_AT_SKEW_MS`) refuses it with :class:`RunConflict`: it was sent to an
        earlier pause, and a redelivered message must not answer the next one.
        """
        check_json_value(payload, "the payload")
        record = self.get(run_id)
        if record.status != SnapshotStatus.PAUSED:
            if _is_retry_of_resume(record, payload, expected_version):
                self.dispatcher.ensure_scheduled(record)
                return record
            raise RunConflict(f"run {run_id!r} is {record.status.value}, not paused")
        waiting = waiting_for_children(record.snapshot)
        if waiting is not None:
            raise RunConflict(
                f"run {run_id!r} waits for its {waiting.get('count')} child runs (node "
                f"{waiting.get('node')!r}); it goes on when they end, and cancelling it "
                "cancels them"
            )
        if expected_version is not None and expected_version != record.version:
            raise RunConflict(
                f"run {run_id!r} is at version {record.version}, not {expected_version}"
            )
        if (
            expected_version is None
            and sent_at is not None
            and record.updated_at > sent_at + SENT_AT_SKEW_MS
        ):
            raise RunConflict(
                f"run {run_id!r} paused at {iso_ms(record.updated_at)}, after this resume was "
                f"sent ({iso_ms(sent_at)}): it was meant for an earlier pause"
            )
        head = record.snapshot.model_copy(
            update={"status": SnapshotStatus.ACTIVE, "version": record.version + 1}
        )
        return self._transition(record, head, Payload(payload, "resume"))

    def cancel(self, run_id: str, reason: str = CANCELLED_REASON) -> RunRecord:
        """Fail a run that has not ended; later deliveries for it are stale. A run waiting
        for child runs cancels them too (and theirs)."""
        record = self.get(run_id)
        if record.status.is_terminal:
            raise RunConflict(f"run {run_id!r} is already {record.status.value}")
        cancelled = self.dispatcher.children.cancel(record, reason)
        if cancelled is None:  # it ended meanwhile (a racing cancel, its last step)
            ended = self.get(run_id)
            raise RunConflict(f"run {run_id!r} is already {ended.status.value}")
        return cancelled

    def _transition(self, record: RunRecord, head: Snapshot, pending: Payload | None) -> RunRecord:
        result = self.dispatcher.commit_transition(
            record.run_id, record.version, head, pending=pending
        )
        if not result.committed:
            raise RunConflict(f"run {record.run_id!r} changed meanwhile; read it and retry")
        assert result.record is not None
        return result.record

    def reconcile(
        self, *, grace_ms: int, limit: int = 500, cursor: str | None = None
    ) -> ReconcileReport:
        """Schedule again the next step of every run that is overdue by more than ``grace_ms``.

        The safety net of a scheduler that is not transactional with the store: a run
        created or committed whose delivery was then lost (the enqueue failed, a crash in
        between, a task dropped after its last attempt) would otherwise wait forever. A run
        is overdue when :func:`~refluxo.runtime.due.expected_at` of its head lies more than
        ``grace_ms`` in the past; finished runs and runs paused until a caller resumes them
        never are. Scheduling is idempotent, so a step that is merely slow is not run twice
        (a duplicate delivery finds its version stale).

        At most ``limit`` runs are examined per call; ``cursor`` (a report's
        ``next_cursor``) continues a pass that stopped there.

        Raises:
            BadRequest: a negative grace, a limit below 1, or a cursor no pass made.
            TransientError: the store or the scheduler failed; retry later.
        """
        if grace_ms < 0:
            raise BadRequest("the grace period must not be negative")
        if limit < 1:
            raise BadRequest("the limit must be at least 1")
        now = self.app.clock()
        cutoff = now - grace_ms
        examined = rescheduled = empty = 0
        while examined < limit:
            page = self.store.overdue_runs(
                cutoff, limit=min(RECONCILE_PAGE, limit - examined), cursor=cursor
            )
            cursor = page.next_cursor
            empty += not page.runs
            for record in page.runs:
                examined += 1
                # The store's copy of the expected time may be coarser: the head decides.
                expected = expected_at(record.snapshot, record.updated_at)
                if expected is None or expected > cutoff:
                    continue
                try:
                    self.dispatcher.ensure_scheduled(record)
                except Exception:  # one run's failure must not hold back the others
                    logger.warning(
                        "scheduling overdue run %s again failed; the next pass retries",
                        record.run_id,
                        exc_info=True,
                    )
                    continue
                rescheduled += 1
                log_event(
                    "run_stalled",
                    f"run {record.run_id} ({record.status.value} at version {record.version}) "
                    f"was due to step {(now - expected) / 1000:.0f} s ago; its next step is "
                    "scheduled again",
                    level=logging.WARNING,
                    run_id=record.run_id,
                    workflow=record.workflow,
                    version=record.version,
                    status=record.status.value,
                    expectedAt=expected,
                    overdueMs=now - expected,
                )
            if cursor is None or empty >= RECONCILE_EMPTY_PAGES:
                break
        if cursor is None and isinstance(self.store, RetentionSweeper):
            try:
                self.store.finish_retention(limit=RECONCILE_PAGE)
            except TransientError:
                logger.warning("completing the expiry of finished runs failed", exc_info=True)
        return ReconcileReport(examined, rescheduled, cursor)


def iso_ms(epoch_ms: int) -> str:
    """``epoch_ms`` as ISO 8601 in UTC to the millisecond (``2026-01-02T10:00:00.250Z``)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
