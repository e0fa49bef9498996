"""The dispatcher: one delivery in, at most one commit out.

For each delivery of (run, version) it loads the run's head, executes the next step (or a
small batch of quick steps, within a budget), commits the result with the version as an
optimistic lock, and schedules whatever comes next. It is written once, against the
:mod:`~refluxo.runtime.ports`, and runs unchanged on every backend.

Crash safety, point by point:

* before the commit: nothing was written; the delivery is redelivered and the step runs
  again (a node's side effects are at least once; use ``current_step().idempotency_key``).
  A :class:`~refluxo.errors.TransientError` anywhere (loading, reading history inside an
  expression, committing) propagates out of :meth:`Dispatcher.deliver` unchanged: the
  delivery is not acknowledged and the stored run is untouched.
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
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from refluxo._aio import offload
from refluxo.context import EMPTY_CONTEXT
from refluxo.engine import Admit, Advance, Verdict, WorkflowEngine
from refluxo.errors import (
    LimitExceededError,
    TransientError,
    WorkflowDefinitionError,
    ends_the_step,
)
from refluxo.metadata import FAILED_REASON, RESUME_AT
from refluxo.model import Snapshot, SnapshotStatus, trusted
from refluxo.redaction import Redactor
from refluxo.runtime.app import App
from refluxo.runtime.builtins import timer_payload
from refluxo.runtime.children import (
    CHILDREN_SOURCE,
    ChildRuns,
    mark_waiting,
    take_inputs,
)
from refluxo.runtime.due import due_time, next_delivery, schedule_next
from refluxo.runtime.errors import GlobalsUnavailable, StepUnanswered
from refluxo.runtime.events_log import log_event
from refluxo.runtime.events_log import logger as events_logger
from refluxo.runtime.fanout import ChildrenOutcome
from refluxo.runtime.history import HistoryContext
from refluxo.runtime.links import parent_link
from refluxo.runtime.ports import (
    AppendedResult,
    CommitResult,
    Delivery,
    Payload,
    RunRecord,
    Scheduler,
    SnapshotStore,
    StepCommit,
)
from refluxo.runtime.scrub import scrub_head, scrub_results
from refluxo.runtime.step import RunInfo, running
from refluxo.steps import describe_error, fail

logger = logging.getLogger("refluxo.dispatcher")


class Outcome(enum.StrEnum):
    """What a delivery did. Every outcome acknowledges the delivery."""

    COMMITTED = "committed"
    STALE = "stale"
    LOST_RACE = "lost_race"
    NOT_DUE = "not_due"
    IDLE = "idle"
    UNKNOWN_RUN = "unknown_run"
    CHILDREN = "children"
    """A waiting parent started its children, or an ended child reported to its parent."""


@dataclass(frozen=True, slots=True)
class StepBudget:
    """How much one delivery may execute before committing.

    The default, one step, commits every transition. A larger budget lets quick nodes run
    several steps per commit (fewer store writes and deliveries per node); a run stops
    early at a pause, an error, completion, or when ``max_ms`` have elapsed. Whatever
    stops a batch, the steps it executed are committed.
    """

    max_steps: int = 1
    max_ms: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("a step budget allows at least one step")
        if self.max_ms is not None and not self.max_ms > 0:
            raise ValueError("a step budget's max_ms must be positive")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a delivery did. ``acknowledged``: the commit itself marked the delivery done
    (a store with a transactional outbox), so the scheduler need not."""

    outcome: Outcome
    record: RunRecord | None = None
    steps: int = 0
    acknowledged: bool = False


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number (the store would keep null)")


def head_only(snapshot: Snapshot) -> Snapshot:
    """The snapshot without its context: what a store keeps in a run's head."""
    # A copy of the (frozen, valid) fields with the context replaced: what model_copy
    # does, without its generic copying (this runs on every step).
    return trusted(
        Snapshot, {**snapshot.__dict__, "context": EMPTY_CONTEXT}, snapshot.__pydantic_extra__
    )


class Dispatcher:
    """Executes deliveries for one :class:`App` against a store and a scheduler.

    Store and scheduler calls block: :meth:`deliver` makes them through
    :func:`refluxo._aio.offload`, in the delivering thread when the step is driven in place
    (:meth:`refluxo.runtime.loop.EventLoopThread.run_in_place`), else in the event loop's
    thread pool so that the loop keeps serving other deliveries meanwhile.
    """

    def __init__(
        self,
        app: App,
        store: SnapshotStore,
        scheduler: Scheduler,
        *,
        budget: StepBudget | None = None,
        max_platform_retries: int | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.scheduler = scheduler
        self.budget = budget or StepBudget()
        self.max_platform_retries = max_platform_retries
        """Past this many platform retries of one delivery, its step counts as a failed
        attempt of the node (:class:`StepUnanswered`); ``None``: never."""
        self.children = ChildRuns(app, store, scheduler)
        """Starts, reports, joins and cancels child runs (``map``, ``parallel``, ``call``)."""

    async def deliver(self, delivery: Delivery, known: RunRecord | None = None) -> DeliveryResult:
        """Process one delivery; see the module docstring for the guarantees.

        ``known``: the run as its last commit returned it (a scheduler going on with the run
        in process), used instead of loading it; if it is no longer the stored head, the
        commit loses the optimistic lock like any stale copy.

        Raises:
            TransientError: the store or scheduler failed for a reason that may pass;
                nothing was committed that the redelivery would not find.
        """
        record: RunRecord | None = known
        if record is None or record.run_id != delivery.run_id:
            record = await offload(self.store.load_run, delivery.run_id)
        if record is None:
            log_event(
                "step",
                "delivery for an unknown run ignored",
                level=logging.WARNING,
                run_id=delivery.run_id,
                version=delivery.version,
                outcome=Outcome.UNKNOWN_RUN.value,
            )
            return DeliveryResult(Outcome.UNKNOWN_RUN)
        now = self.app.clock()
        if record.version != delivery.version:
            await offload(self.ensure_scheduled, record)
            _log_skipped(record, delivery, Outcome.STALE)
            return DeliveryResult(Outcome.STALE, record)
        due = due_time(record.snapshot)
        if due is None:
            if self.children.handles(record):
                await offload(self.children.deliver, record)
                return DeliveryResult(Outcome.CHILDREN, record)
            return DeliveryResult(Outcome.IDLE, record)
        target = max(due, delivery.due_at)
        if target > now:
            # Early: a retry or timer not yet due, or one link of a chained long delay. The
            # same due time again is the next hop, so its name differs from this delivery's.
            hop = delivery.hop + 1 if target == delivery.due_at else 0
            later = Delivery(record.run_id, record.version, target, hop)
            await offload(self.scheduler.schedule, later)
            return DeliveryResult(Outcome.NOT_DUE, record)
        orphaned = (
            await offload(self.children.orphaned, record)
            if record.version == 0 and parent_link(record.snapshot) is not None
            else None
        )
        if orphaned is not None:
            # Started while its parent (or its tree's root) stopped waiting.
            cancelled = await offload(self.children.cancel, record, orphaned)
            return DeliveryResult(Outcome.COMMITTED if cancelled else Outcome.LOST_RACE, cancelled)
        if record.pending is not None and record.pending.source == CHILDREN_SOURCE:
            # A wait joined early by a failed child: its other children stop first.
            await offload(self.children.stop_siblings, record)
        globals_, unavailable = self._globals()
        with running(RunInfo(record.run_id, record.workflow)):
            advance = await self._advance(
                record, now, globals_, delivery.platform_retries, unavailable
            )
        redactor = self.app.redactor(globals_)
        result: DeliveryResult = await offload(self._commit, record, delivery, advance, redactor)
        return result

    def commit_transition(
        self,
        run_id: str,
        expected_version: int,
        head: Snapshot,
        *,
        pending: Payload | None = None,
    ) -> CommitResult:
        """Commit ``head`` (no results) over ``expected_version`` and schedule what follows.

        For run operations (resume, cancel). Nothing is scheduled if the commit lost.
        """
        commit = StepCommit(
            run_id=run_id,
            expected_version=expected_version,
            snapshot=head,
            pending=pending,
            next_delivery=next_delivery(run_id, head),
        )
        return self._apply(commit)

    def ensure_scheduled(self, record: RunRecord) -> None:
        """Make sure the stored run's next step is scheduled (idempotent)."""
        schedule_next(self.scheduler, record)

    # -- executing -------------------------------------------------------------------------

    def _globals(self) -> tuple[Any, GlobalsUnavailable | None]:
        """The app's globals for one delivery, or why they could not be read: a provider's
        :class:`TransientError` redelivers the step; any other failure is the node's (its
        retry policy decides), told without the provider's own text (it may quote a
        secret, and no secret is known to mask it with)."""
        try:
            return self.app.globals(), None
        except TransientError as err:  # its text may quote a secret too: not passed on
            raise TransientError(
                f"the app's globals provider raised {type(err).__name__} (message withheld); "
                "the step is delivered again"
            ) from None
        except BaseException as err:
            if ends_the_step(err):
                raise
            return None, GlobalsUnavailable(err)

    async def _advance(
        self,
        record: RunRecord,
        now: int,
        globals_: Any,
        platform_retries: int = 0,
        unavailable: GlobalsUnavailable | None = None,
    ) -> Advance:
        snapshot = record.snapshot
        payload: Any = None
        if record.pending is not None:
            payload = record.pending.value
            if record.pending.source == CHILDREN_SOURCE:
                payload = ChildrenOutcome.from_json(payload)
        elif snapshot.status == SnapshotStatus.PAUSED:
            payload = timer_payload(int(snapshot.metadata[RESUME_AT]))
        reader = await offload(self.store.history, record)
        current = trusted(
            Snapshot,
            {
                **snapshot.__dict__,
                "status": SnapshotStatus.ACTIVE,
                "context": HistoryContext(reader, record.result_count),
                "last_started_at": now
                if snapshot.status != SnapshotStatus.ACTIVE
                else snapshot.last_started_at,
            },
            snapshot.__pydantic_extra__,
        )
        try:
            engine = await self._engine(record.definition_version)
        except WorkflowDefinitionError as err:
            return Advance(fail(current, describe_error(err)), 0)
        budget = self.budget
        limit = self.max_platform_retries
        try:
            if unavailable is not None:
                return Advance(await engine.record_failure(current, unavailable, None), 1)
            if limit is not None and platform_retries > limit:
                unanswered = StepUnanswered(
                    f"node {current.current_node_id!r} got no answer in "
                    f"{platform_retries + 1} deliveries (timeouts or crashes)"
                )
                return Advance(await engine.record_failure(current, unanswered, globals_), 1)
            advance = await engine.drive(
                current,
                external_payload=payload,
                globals=globals_,
                step_limit=self.app.limits.max_steps_per_run - record.result_count,
                max_steps=budget.max_steps,
                deadline=time.monotonic() + budget.max_ms / 1000 if budget.max_ms else None,
                admit=self._admission(),
                started=record.version == 0,
                keep_progress=True,
            )
        except TransientError:
            raise
        except Exception as err:
            # The first step cannot run at all: an edge to a missing node, a node type the
            # app no longer has, a failing error handler. Redelivering would fail the same
            # way forever: fail the run with the reason (logged once committed, scrubbed).
            return Advance(fail(current, describe_error(err)), 0)
        after = advance.snapshot
        if after.status == SnapshotStatus.PAUSED and self.app.starts_children(
            engine.node_type(after.current_node_id) or ""
        ):
            return Advance(mark_waiting(after, self.app), advance.steps)
        return advance

    async def _engine(self, version: str) -> WorkflowEngine:
        cached = self.app.cached_engine(version)
        if cached is not None:
            return cached
        stored: Mapping[str, Any] | None = await offload(self.store.get_definition, version)
        if stored is None:
            raise WorkflowDefinitionError(f"definition version {version} is missing from the store")
        return self.app.engine_for(version, lambda _: stored)

    def _admission(self) -> Admit:
        """Judges each step of a delivery: can its results be stored, is the batch full.

        A step whose output is not JSON or is over the output limit fails the run at that
        step (retrying would produce it again), keeping the steps before it. A batch ends
        once its results reach the commit limits, so every commit fits every store.
        """
        limits = self.app.limits
        seen = 0
        total = 0

        def admit(after: Snapshot) -> Verdict | str:
            nonlocal seen, total
            context = after.context
            pending = context.pending if isinstance(context, HistoryContext) else ()
            for entry in pending[seen:]:
                try:
                    encoded = to_json(entry.result.output, inf_nan_mode="constants")
                    if b"NaN" in encoded or b"Infinity" in encoded:
                        json.loads(encoded, parse_constant=_not_json)
                except (PydanticSerializationError, ValueError, TypeError) as err:
                    return f"the output of node {entry.node_id!r} is not JSON-serializable: {err}"
                size = len(encoded)
                if size > limits.max_output_bytes:
                    return (
                        f"the output of node {entry.node_id!r} is {size} bytes; "
                        f"the limit is {limits.max_output_bytes} bytes"
                    )
                total += size
            seen = len(pending)
            full = seen >= limits.max_commit_results or total >= limits.max_commit_bytes
            return Verdict.LAST if full else Verdict.KEEP

        return admit

    # -- committing ------------------------------------------------------------------------

    def _commit(
        self,
        record: RunRecord,
        delivery: Delivery,
        advance: Advance,
        redactor: Redactor | None = None,
    ) -> DeliveryResult:
        current = advance.snapshot
        context = current.context
        results = context.pending if isinstance(context, HistoryContext) else ()
        head = head_only(current)
        if redactor:
            # The last look: secrets masked in exactly what the store will encode.
            results = scrub_results(results, redactor)
            head = scrub_head(head, redactor)
        head, inputs, digest = take_inputs(head)
        if inputs is not None:  # a wait for child runs: their inputs are kept apart
            self.store.put_child_inputs(record.run_id, head.version, digest, inputs)
        commit = StepCommit(
            run_id=record.run_id,
            expected_version=delivery.version,
            snapshot=head,
            results=results,
            next_delivery=next_delivery(record.run_id, head),
            delivery=delivery,
            # The head this step was computed from: nothing to read again to commit it.
            expected_token=record.token,
            expected_counts=record.node_counts,
        )
        try:
            result = self._apply(commit, logged=(record, delivery))
        except TransientError:
            raise
        except (LimitExceededError, ValueError, OverflowError) as err:
            # The store cannot hold this commit (a head grown past a document's size, a
            # value out of its range): fail the run with the reason rather than retry
            # forever a commit that can never be written.
            head = head_only(fail(record.snapshot, str(err)))
            if redactor:
                head = scrub_head(head, redactor)
            result = self._apply(
                StepCommit(
                    run_id=record.run_id,
                    expected_version=delivery.version,
                    snapshot=head,
                    delivery=delivery,
                    expected_token=record.token,
                ),
                logged=(record, delivery),
            )
        if not result.committed:
            # The winner may have committed and then failed to schedule: acknowledging this
            # delivery must not leave the stored run without its next step.
            stored = result.record or self.store.load_run(record.run_id)
            _log_skipped(stored or record, delivery, Outcome.LOST_RACE)  # as it is stored
            if stored is not None:
                self.ensure_scheduled(stored)
            return DeliveryResult(Outcome.LOST_RACE, stored)
        return DeliveryResult(
            Outcome.COMMITTED, result.record, advance.steps, acknowledged=result.scheduled
        )

    def _apply(
        self, commit: StepCommit, *, logged: tuple[RunRecord, Delivery] | None = None
    ) -> CommitResult:
        result = self.store.commit(commit)
        if result.committed and logged is not None:
            # Before scheduling: a scheduling failure redelivers a now stale delivery.
            _log_committed(*logged, commit.snapshot, commit.results)
        if result.committed and not result.scheduled and commit.next_delivery is not None:
            self.scheduler.schedule(commit.next_delivery)
        return result


# -- operational events --------------------------------------------------------------------
# Logged once the commit landed (before what follows is scheduled), from what was committed:
# the results and head as the store keeps them, secrets masked (never an exception's own
# text). One ``step`` line per executed step a delivery committed, whatever the batch size.


def _log_skipped(record: RunRecord, delivery: Delivery, outcome: Outcome) -> None:
    """A delivery that committed nothing: stale (the run moved on), or lost the race."""
    log_event(
        "step",
        f"{outcome.value} delivery: nothing committed",
        run_id=record.run_id,
        workflow=record.workflow,
        node=record.snapshot.current_node_id,
        version=delivery.version,
        outcome=outcome.value,
        storedVersion=record.version,
    )


_WARNED = frozenset({SnapshotStatus.ERROR, SnapshotStatus.FAILED})
"""A head in these states may log above ``INFO`` (a failed attempt, a failed run)."""


def _log_committed(
    record: RunRecord, delivery: Delivery, head: Snapshot, results: Sequence[AppendedResult]
) -> None:
    """The steps a delivery committed, and what became of the run.

    Each result is a step (``completed``, or ``retrying``/``failed`` for the last one if it
    is an error); a pause, or a failure no result explains (an unstorable output, the step
    limit, a graph that cannot go on), is one more step at the head's node.
    """
    run_id, workflow, status = record.run_id, record.workflow, head.status
    if status not in _WARNED and not events_logger.isEnabledFor(logging.INFO):
        return  # nothing below would be written: spare building the lines
    failed_by_result = bool(results) and results[-1].result.error is not None
    one_more = status == SnapshotStatus.PAUSED or (
        status == SnapshotStatus.FAILED and not failed_by_result
    )
    for index, entry in enumerate(results):
        result = entry.result
        last = index == len(results) - 1
        outcome = "completed"
        if result.error is not None:
            outcome = "retrying" if last and status == SnapshotStatus.ERROR else "failed"
        log_event(
            "step",
            f"node {entry.node_id} {outcome}",
            run_id=run_id,
            workflow=workflow,
            node=entry.node_id,
            version=delivery.version + index + 1,
            outcome=outcome,
            attempt=result.attempt,
            status=(status if last and not one_more else SnapshotStatus.ACTIVE).value,
        )
        if outcome == "retrying":
            log_event(
                "attempt_failed",
                result.error or "",
                level=logging.WARNING,
                run_id=run_id,
                workflow=workflow,
                node=entry.node_id,
                version=delivery.version + index + 1,
                attempt=result.attempt,
                error=result.error,
            )
    if one_more:
        outcome = "paused" if status == SnapshotStatus.PAUSED else "failed"
        log_event(
            "step",
            f"node {head.current_node_id} {outcome}",
            run_id=run_id,
            workflow=workflow,
            node=head.current_node_id,
            version=head.version,
            outcome=outcome,
            status=status.value,
        )
    if status == SnapshotStatus.FAILED:
        reason = str(head.metadata.get(FAILED_REASON) or "failed")
        log_event(
            "run_failed",
            reason,
            level=logging.ERROR,
            run_id=run_id,
            workflow=workflow,
            node=head.current_node_id,
            version=head.version,
            failedReason=reason,
        )


__all__ = [
    "DeliveryResult",
    "Dispatcher",
    "Outcome",
    "StepBudget",
    "due_time",
    "head_only",
    "next_delivery",
]
