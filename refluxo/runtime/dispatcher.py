"""The dispatcher: one delivery in, at most one commit out.

For each delivery of (run, version) it loads the run's head, executes the next step (or a
small batch of quick steps, within a budget), commits the result with the version as an
optimistic lock, and schedules whatever comes next. It is written once, against the
:mod:`~refluxo.runtime.protocols`, and runs unchanged on every backend.

Crash safety, point by point:

* before the commit: nothing was written; the delivery is redelivered and the step runs
  again (a node's side effects are at least once; use ``current_step().idempotency_key``).
* between the commit and the scheduling of the next step: the delivery was not
  acknowledged, so it is redelivered; its version is now stale, and a stale delivery
  schedules the next step of the stored run (idempotently) and commits nothing.
* after scheduling: a duplicate delivery is stale too.

A commit is applied exactly once because it requires the stored version to be the one the
delivery carried; of two dispatchers racing on the same delivery, one commits and the
other's result is discarded.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from refluxo.context import EMPTY_CONTEXT
from refluxo.engine import STEP_LIMIT_REASON, describe_error
from refluxo.errors import LimitExceededError, WorkflowDefinitionError
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.app import App
from refluxo.runtime.builtins import timer_payload
from refluxo.runtime.history import HistoryContext
from refluxo.runtime.protocols import (
    AppendedResult,
    CommitResult,
    Delivery,
    Payload,
    RunRecord,
    Scheduler,
    SnapshotStore,
    StepCommit,
)
from refluxo.runtime.step import StepInfo, running_step

logger = logging.getLogger("refluxo.dispatcher")


class Outcome(enum.StrEnum):
    """What a delivery did. Every outcome acknowledges the delivery."""

    COMMITTED = "committed"
    STALE = "stale"
    LOST_RACE = "lost_race"
    NOT_DUE = "not_due"
    IDLE = "idle"
    UNKNOWN_RUN = "unknown_run"


@dataclass(frozen=True, slots=True)
class StepBudget:
    """How much one delivery may execute before committing.

    The default, one step, commits every transition. A larger budget lets quick nodes run
    several steps per commit (fewer store writes and deliveries per node); a run stops
    early at a pause, an error, completion, or when ``max_ms`` have elapsed.
    """

    max_steps: int = 1
    max_ms: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("a step budget allows at least one step")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a delivery did. ``acknowledged``: the commit itself marked the delivery done
    (a store with a transactional outbox), so the scheduler need not."""

    outcome: Outcome
    record: RunRecord | None = None
    steps: int = 0
    acknowledged: bool = False


def due_time(snapshot: Snapshot) -> int | None:
    """When the stored run's next step is due (epoch ms), or None if it waits for nobody.

    Active runs are due now (0); a run waiting for a retry at ``retryState.nextRetryAt``; a
    timed pause at ``metadata["resumeAt"]``; other paused, completed and failed runs never.
    """
    status = snapshot.status
    if status == SnapshotStatus.ACTIVE:
        return 0
    if status == SnapshotStatus.ERROR:
        retry = snapshot.retry_state
        return (retry.next_retry_at or 0) if retry is not None else 0
    if status == SnapshotStatus.PAUSED:
        resume_at = snapshot.metadata.get("resumeAt")
        return int(resume_at) if isinstance(resume_at, int | float) else None
    return None


def failed(snapshot: Snapshot, reason: str, *, bump: bool = True) -> Snapshot:
    """``snapshot`` failed with ``metadata["failedReason"] = reason`` (a new version)."""
    return snapshot.model_copy(
        update={
            "status": SnapshotStatus.FAILED,
            "version": snapshot.version + (1 if bump else 0),
            "retry_state": None,
            "metadata": {**snapshot.metadata, "failedReason": reason},
        }
    )


def head_only(snapshot: Snapshot) -> Snapshot:
    """The snapshot without its context: what a store keeps in a run's head."""
    return snapshot.model_copy(update={"context": EMPTY_CONTEXT})


class Dispatcher:
    """Executes deliveries for one :class:`App` against a store and a scheduler."""

    def __init__(
        self,
        app: App,
        store: SnapshotStore,
        scheduler: Scheduler,
        *,
        budget: StepBudget | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.scheduler = scheduler
        self.budget = budget or StepBudget()

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Process one delivery; see the module docstring for the guarantees."""
        record = self.store.load_run(delivery.run_id)
        if record is None:
            logger.warning("delivery for unknown run %s ignored", delivery.run_id)
            return DeliveryResult(Outcome.UNKNOWN_RUN)
        now = self.app.clock()
        if record.version != delivery.version:
            self.ensure_scheduled(record)
            return DeliveryResult(Outcome.STALE, record)
        due = due_time(record.snapshot)
        if due is None:
            return DeliveryResult(Outcome.IDLE, record)
        target = max(due, delivery.due_at)
        if target > now:
            # Early: a retry or timer not yet due, or one link of a chained long delay. The
            # same due time again is the next hop, so its name differs from this delivery's.
            hop = delivery.hop + 1 if target == delivery.due_at else 0
            self.scheduler.schedule(Delivery(record.run_id, record.version, target, hop))
            return DeliveryResult(Outcome.NOT_DUE, record)
        return await self._execute(record, delivery, now)

    def commit_transition(
        self,
        run_id: str,
        expected_version: int,
        head: Snapshot,
        *,
        results: Sequence[AppendedResult] = (),
        pending: Payload | None = None,
        acknowledge: Delivery | None = None,
        expected_revision: Any = None,
    ) -> CommitResult:
        """Commit ``head`` over ``expected_version`` and schedule its next step.

        The next delivery goes into the commit's outbox (recorded atomically by stores that
        can) and is scheduled after the commit otherwise. Nothing is scheduled if the
        commit lost its race. ``expected_revision``: the revision of the record ``head``
        was computed from, so the store may commit without reading the head again.
        """
        due = due_time(head)
        outbox = (Delivery(run_id, head.version, due),) if due is not None else ()
        result = self.store.commit(
            StepCommit(
                run_id=run_id,
                expected_version=expected_version,
                snapshot=head,
                results=results,
                pending=pending,
                outbox=outbox,
                acknowledge=acknowledge,
                expected_revision=expected_revision,
            )
        )
        if result.committed and not result.scheduled:
            for next_delivery in outbox:
                self.scheduler.schedule(next_delivery)
        return result

    def ensure_scheduled(self, record: RunRecord) -> None:
        """Make sure the stored run's next step is scheduled (idempotent)."""
        due = due_time(record.snapshot)
        if due is not None:
            self.scheduler.schedule(Delivery(record.run_id, record.version, due))

    async def _execute(self, record: RunRecord, delivery: Delivery, now: int) -> DeliveryResult:
        snapshot = record.snapshot
        payload: Any = None
        if record.pending is not None:
            payload = record.pending.value
        elif snapshot.status == SnapshotStatus.PAUSED:
            payload = timer_payload(int(snapshot.metadata["resumeAt"]))
        context = HistoryContext(
            self.store.history(record.run_id), record.result_count, node_counts=record.node_counts
        )
        current = snapshot.model_copy(
            update={
                "status": SnapshotStatus.ACTIVE,
                "context": context,
                "last_started_at": now
                if snapshot.status != SnapshotStatus.ACTIVE
                else snapshot.last_started_at,
            }
        )
        current, steps = await self._run_budget(record, current, payload, now)
        return self._commit(record, delivery, current, steps)

    async def _run_budget(
        self, record: RunRecord, current: Snapshot, payload: Any, now: int
    ) -> tuple[Snapshot, int]:
        try:
            engine = self.app.engine_for(record.definition_version, self._definition)
        except WorkflowDefinitionError as err:
            logger.error("run %s cannot continue: %s", record.run_id, err)
            return failed(current, describe_error(err)), 0
        globals_ = self.app.globals()
        started = time.monotonic()
        steps = 0
        limit = self.app.limits.max_steps_per_run
        while True:
            if record.result_count + steps >= limit:
                return failed(current, STEP_LIMIT_REASON, bump=steps == 0), steps
            node_id = current.current_node_id or ""
            retry = current.retry_state
            attempt = retry.attempts + 1 if retry is not None and retry.node_id == node_id else 1
            info = StepInfo(
                run_id=record.run_id,
                workflow=record.workflow,
                node_id=node_id,
                version=current.version,
                attempt=attempt,
                now=now if steps == 0 else self.app.clock(),
            )
            try:
                with running_step(info):
                    current = await engine.execute_step(
                        current, payload if steps == 0 else None, globals_
                    )
            except Exception as err:
                if steps:
                    return current, steps  # commit the progress; the next delivery fails
                # The stored graph cannot go on (an edge to a missing node, a node type the
                # app no longer has, a failing error handler): fail the run with the reason
                # rather than redeliver it forever.
                logger.error("run %s cannot continue: %s", record.run_id, err)
                return failed(current, describe_error(err)), 0
            steps += 1
            if current.status != SnapshotStatus.ACTIVE or steps >= self.budget.max_steps:
                return current, steps
            if self.budget.max_ms is not None and (
                (time.monotonic() - started) * 1000 >= self.budget.max_ms
            ):
                return current, steps

    def _definition(self, version: str) -> Mapping[str, Any]:
        stored = self.store.get_definition(version)
        if stored is None:
            raise WorkflowDefinitionError(f"definition version {version} is missing from the store")
        return stored

    def _commit(
        self, record: RunRecord, delivery: Delivery, current: Snapshot, steps: int
    ) -> DeliveryResult:
        context = current.context
        results = context.pending if isinstance(context, HistoryContext) else ()
        reason = self._unstorable(results)
        if reason is not None:
            logger.error("run %s failed: %s", record.run_id, reason)
            current = failed(current, reason, bump=False)
            results = ()
        try:
            return self._store(record, delivery, current, results, steps)
        except LimitExceededError as err:
            logger.error("run %s failed: %s", record.run_id, err)
            return self._store(record, delivery, failed(current, str(err), bump=False), (), 0)

    def _unstorable(self, results: Sequence[AppendedResult]) -> str | None:
        """Why these results cannot be committed, or None: not JSON, or too large."""
        limit = self.app.limits.max_output_bytes
        for entry in results:
            try:
                size = len(to_json(entry.result.output))
            except (PydanticSerializationError, ValueError, TypeError) as err:
                return f"the output of node {entry.node_id!r} is not JSON-serializable: {err}"
            if size > limit:
                return (
                    f"the output of node {entry.node_id!r} is {size} bytes; "
                    f"the limit is {limit} bytes"
                )
        return None

    def _store(
        self,
        record: RunRecord,
        delivery: Delivery,
        current: Snapshot,
        results: Sequence[AppendedResult],
        steps: int,
    ) -> DeliveryResult:
        result = self.commit_transition(
            record.run_id,
            delivery.version,
            head_only(current),
            results=results,
            acknowledge=delivery,
            # The head this step was computed from: nothing to read again to commit it.
            expected_revision=record.revision,
        )
        if not result.committed:
            logger.info("run %s: lost the race for version %s", record.run_id, delivery.version)
            return DeliveryResult(Outcome.LOST_RACE, result.record)
        return DeliveryResult(
            Outcome.COMMITTED, result.record, steps, acknowledged=result.scheduled
        )


__all__ = [
    "DeliveryResult",
    "Dispatcher",
    "Outcome",
    "StepBudget",
    "due_time",
    "head_only",
]
