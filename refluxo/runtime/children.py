"""Child runs: started by a waiting parent, each end recorded once, joined once.

A ``map``, ``parallel`` or ``call`` node (:mod:`refluxo.runtime.fanout`) pauses its run with
a request for child runs. The dispatcher marks that pause as a wait
(``metadata["childRuns"]``, :func:`mark_waiting`), and from then on everything is driven by
deliveries that the heads themselves call for (:func:`refluxo.runtime.links.next_delivery`):

1. **Start.** The parent's delivery at its waiting version starts children ``0 ..
   concurrency - 1``. A child's id is derived from the parent's id, version and the
   child's index (:func:`~refluxo.runtime.links.child_run_id`), and creating a run is
   idempotent by id: a redelivered or duplicated start creates nothing twice.
2. **End.** A child that ends (completes, fails, is cancelled) commits a head that calls
   for one more delivery of its own, which reports the end to the parent: the ledger
   (:class:`~refluxo.runtime.ports.JoinLedger`) records each child once and answers how
   many have ended. The report then starts the child ``concurrency`` places further on
   (so at most ``concurrency`` run at once), or, when it was the last, joins. A crash
   between a child's commit and its report loses nothing: the child's delivery is not
   acknowledged, comes again, finds itself stale and schedules the report again.
3. **Join.** The parent's head goes from its waiting version to the next with the
   children's outcome as its pending payload: an optimistic-lock commit, so of any number
   of racing joins exactly one lands and schedules the parent's next step. The node then
   runs again with a :class:`~refluxo.runtime.fanout.ChildrenOutcome` and outputs.
   Under ``fail_fast`` the first failed child joins at once, and the parent's next step
   cancels the others before its node runs (:meth:`ChildRuns.stop_siblings`).

No document is written by every child: the parent's head is written twice per wait (the
pause, the join), each child writes its own run and one ledger entry.

A child created after its parent stopped waiting (cancelled, or joined early by a failed
sibling, while a report was starting it) is cancelled at its first step: it checks that
its parent still waits for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Final

from refluxo.errors import TransientError
from refluxo.metadata import CANCELLED_AT, CHILD_RUNS, FAILED_REASON, PARENT_RUN, PAUSED_WITH
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.app import App
from refluxo.runtime.due import next_delivery, schedule_next
from refluxo.runtime.errors import UnknownWorkflow
from refluxo.runtime.events_log import log_event
from refluxo.runtime.fanout import FAIL_FAST
from refluxo.runtime.links import (
    ParentLink,
    as_reported,
    budget_of,
    child_bookkeeping,
    child_run_id,
    child_share,
    depth_of,
    descendants_taken,
    needs_cascade,
    needs_report,
    needs_start,
    parent_link,
    waiting_for_children,
)
from refluxo.runtime.ports import (
    ChildEnd,
    CommitResult,
    Delivery,
    Payload,
    RunRecord,
    Scheduler,
    SnapshotStore,
    StepCommit,
)
from refluxo.steps import evolve, fail, without

logger = logging.getLogger("refluxo.children")

CHILDREN_SOURCE: Final = "children"
"""The :attr:`Payload.source` of a join's payload: the children's outcome."""

PARENT_CANCELLED: Final = "Cancelled: its parent run was cancelled"
SIBLING_FAILED: Final = "Cancelled: a sibling child run failed (fail_fast)"
PARENT_GONE: Final = "Cancelled: its parent run no longer waits for it"
ROOT_GONE: Final = (
    "Cancelled: the run at the top of its tree no longer waits for it (cancelled, or joined early)"
)

INPUTS_DIGEST: Final = "inputsDigest"
"""The key, in a wait's ``childRuns``, of the digest its children's inputs are kept under."""

ENDS_PAGE: Final = 1000
"""Recorded ends read per query while joining."""

CANCEL_ATTEMPTS: Final = 50
"""Cancels tried on a run that keeps committing before the caller is told to retry."""

JOIN_ATTEMPTS: Final = 5
"""Joins tried before a report gives up (its delivery is retried): each lost only to
other bookkeeping on the same parent, which ends."""


def parent_marker_version(record: RunRecord) -> int | None:
    """The version of the wait ``record`` is in, or None."""
    marker = waiting_for_children(record.snapshot)
    return None if marker is None else int(marker["version"])


def mark_waiting(head: Snapshot, app: App) -> Snapshot:
    """``head`` (paused by a node that starts children) as a wait for those children.

    The node paused with its request (``pausedWith``); the wait keeps it under
    ``childRuns`` with the node and the version, ``waiting: true``. Only the runtime
    writes ``childRuns``: a node of any other type pausing with the same data is an
    ordinary pause.
    """
    request = head.metadata.get(PAUSED_WITH)
    if not isinstance(request, Mapping):
        return head
    limits = app.limits
    max_depth = limits.max_child_depth
    if depth_of(head) >= max_depth:
        return fail(
            head,
            f"node {head.current_node_id!r} cannot start child runs: they would nest "
            f"{depth_of(head) + 1} levels deep, and the limit is {max_depth} (does a "
            "workflow start itself?)",
        )
    inputs = request.get("inputs")
    count = len(inputs) if isinstance(inputs, list) else 0
    # What the run's earlier waits took (a map in a loop) is not there to take again.
    taken = descendants_taken(head)
    budget = max(budget_of(head, limits.max_descendants) - taken, 0)
    if count > budget:
        return fail(
            head,
            f"node {head.current_node_id!r} cannot start {count} child runs: its run tree "
            f"may start {budget} more (max_descendants, {limits.max_descendants} per run a "
            "caller starts, shared by all its descendants and all its waits)",
        )
    marker = {
        **request,
        "node": head.current_node_id,
        "version": head.version,
        "count": count,
        "budget": budget,
        "descendants": taken,
        # Decided once, here: children whose workflow starts none get no share of the
        # budget (and none is charged for them), whatever is registered later.
        "fanOut": any(app.workflow_starts_children(str(name)) for name in _workflows(request)),
        "waiting": True,
    }
    metadata = {**without(head.metadata, PAUSED_WITH), CHILD_RUNS: marker}
    return evolve(head, {"metadata": metadata})


def take_inputs(head: Snapshot) -> tuple[Snapshot, list[Any] | None, str]:
    """``head`` with its wait's children's inputs taken out (to be kept by the store's
    :meth:`~refluxo.runtime.ports.JoinLedger.put_child_inputs`), the inputs and their
    digest; ``head`` itself, None and "" when it holds none.

    A report reads its parent's head; with the inputs in it, each of N reports would
    decode all N inputs (a map of 10,000 children spent most of its time there).
    """
    marker = waiting_for_children(head)
    inputs = marker.get("inputs") if marker is not None else None
    if marker is None or not isinstance(inputs, list):
        return head, None, ""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    kept = {key: value for key, value in marker.items() if key != "inputs"}
    kept[INPUTS_DIGEST] = digest
    head = evolve(head, {"metadata": {**head.metadata, CHILD_RUNS: kept}})
    return head, inputs, digest


def _workflows(marker: Mapping[str, Any]) -> list[Any]:
    """The workflows a wait's children run (a ``parallel``'s, one per branch)."""
    workflows = marker.get("workflows")
    return workflows if isinstance(workflows, list) else [marker.get("workflow")]


def _workflow_of(marker: Mapping[str, Any], index: int) -> str:
    workflows = marker.get("workflows")
    if isinstance(workflows, list):
        return str(workflows[index])
    return str(marker.get("workflow"))


class ChildRuns:
    """Starts, reports, joins and cancels child runs for one app, store and scheduler."""

    def __init__(
        self,
        app: App,
        store: SnapshotStore,
        scheduler: Scheduler,
    ) -> None:
        self.app = app
        self.store = store
        self.scheduler = scheduler

    # -- what a delivery does -------------------------------------------------------------

    def handles(self, record: RunRecord) -> bool:
        """Whether ``record``'s delivery at its own version is child-run work."""
        return child_bookkeeping(record.snapshot)

    def deliver(self, record: RunRecord) -> None:
        """Start a waiting parent's first children, cancel a cancelled parent's children,
        or report an ended child (which may be all three's last step)."""
        marker = needs_start(record.snapshot)
        if marker is not None:
            self._start_window(record, marker)
            return
        marker = needs_cascade(record.snapshot)
        if marker is not None:
            self._cascade(record, marker)
            return
        link = needs_report(record.snapshot)
        if link is not None:
            self._report(record, link)

    def _start_window(self, parent: RunRecord, marker: Mapping[str, Any]) -> None:
        """Children ``0 .. concurrency - 1`` created, then the wait marked started (a
        crash in between starts them again: creating is idempotent)."""
        count = int(marker.get("count", 0))
        if count == 0:
            self._join(parent)  # nothing to wait for: the node goes on at once
            return
        if not self._tree_waits(parent):
            self.cancel(parent, ROOT_GONE)
            return
        for index in range(min(count, int(marker.get("concurrency", 1)))):
            self._start(parent, marker, index)
        metadata = {**parent.snapshot.metadata, CHILD_RUNS: {**marker, "started": True}}
        head = evolve(parent.snapshot, {"version": parent.version + 1, "metadata": metadata})
        self._transition(parent, head, parent.pending)

    def orphaned(self, child: RunRecord) -> str | None:
        """Why ``child`` must not run: its parent, or the root of its tree, no longer
        waits for it (a cancel's reason), or None (also for a run with no parent)."""
        link = parent_link(child.snapshot)
        if link is None:
            return None
        parent = self.store.load_run(link.run_id)
        if parent is None or self._waits_at(parent, link) is None:
            return PARENT_GONE
        if link.root is not None and not self._root_waits(link.root):
            return ROOT_GONE
        return None

    def _tree_waits(self, parent: RunRecord) -> bool:
        """Whether the root of ``parent``'s tree still waits (True for a root): a tree
        whose root was cancelled or joined early starts no more runs anywhere in it."""
        link = parent_link(parent.snapshot)
        return link is None or self._root_waits(link.root_wait)

    def _root_waits(self, root: tuple[str, int]) -> bool:
        record = self.store.load_run(root[0])
        marker = None if record is None else waiting_for_children(record.snapshot)
        return marker is not None and marker.get("version") == root[1]

    # -- starting -------------------------------------------------------------------------

    def _start(self, parent: RunRecord, marker: Mapping[str, Any], index: int) -> None:
        version = int(marker["version"])
        run_id = child_run_id(parent.run_id, version, index)
        above = parent_link(parent.snapshot)
        link = ParentLink(
            parent.run_id,
            version,
            str(marker.get("node")),
            index,
            depth_of(parent.snapshot) + 1,
            child_share(marker, self.app.limits.max_descendants),
            None if above is None else above.root_wait,
        )
        try:
            spec = self.app.get_workflow(_workflow_of(marker, index))
        except UnknownWorkflow as err:
            self._record_end(parent, ChildEnd(index, run_id, "failed", error=str(err)))
            return
        now = self.app.clock()
        snapshot = Snapshot(
            workflow_id=run_id,
            status=SnapshotStatus.ACTIVE,
            current_node_id=spec.start,
            version=0,
            last_started_at=now,
            total_execution_time=0,
            metadata={PARENT_RUN: link.as_metadata()},
        )
        try:
            child_input = self.store.child_input(
                parent.run_id, version, str(marker.get(INPUTS_DIGEST)), index
            )
        except LookupError:
            self._record_end(parent, ChildEnd(index, run_id, "failed", error="its input is lost"))
            return
        record = RunRecord(
            run_id=run_id,
            workflow=spec.name,
            definition_version=spec.version,
            snapshot=snapshot,
            created_at=now,
            updated_at=now,
            input=child_input,
            pending=Payload(child_input),
        )
        self.store.put_definition(spec.version, spec.name, spec.wire)
        first = Delivery(run_id, 0, 0)
        result = self.store.create_run(record, first_delivery=first)
        if result.committed:
            if not result.scheduled:
                self.scheduler.schedule(first)
            return
        existing = result.record or self.store.load_run(run_id)
        if existing is None:
            return
        if parent_link(existing.snapshot) != link:
            # A run a caller started under this id: the child cannot run.
            self._record_end(
                parent,
                ChildEnd(
                    index, run_id, "failed", error=f"run id {run_id!r} is taken by another run"
                ),
            )
            return
        # Started before: make sure it goes on (or reports).
        schedule_next(self.scheduler, existing)

    # -- reporting ------------------------------------------------------------------------

    def _waits_at(self, parent: RunRecord, link: ParentLink) -> Mapping[str, Any] | None:
        marker = waiting_for_children(parent.snapshot)
        if marker is None or marker.get("version") != link.version:
            return None
        return marker

    def _report(self, child: RunRecord, link: ParentLink) -> None:
        """Record the child's end with its parent (if it still waits), then mark the child
        reported, which ends its bookkeeping."""
        parent = self.store.load_run(link.run_id)
        if parent is not None:
            if self._waits_at(parent, link) is not None:
                self._record_end(parent, self._end_of(child, link))
            else:
                # The parent moved on; a join whose scheduling was lost goes on from here.
                schedule_next(self.scheduler, parent)
        head = evolve(
            child.snapshot,
            {"version": child.version + 1, "metadata": as_reported(child.snapshot.metadata)},
        )
        self._transition(child, head, None)

    def _end_of(self, child: RunRecord, link: ParentLink) -> ChildEnd:
        snapshot = child.snapshot
        if snapshot.status == SnapshotStatus.COMPLETED:
            output = None
            if child.result_count > 0:
                last = self.store.timeline(child.run_id, after_seq=child.result_count - 2, limit=1)
                if last:
                    output = last[0].result.output
            return ChildEnd(
                link.index,
                child.run_id,
                SnapshotStatus.COMPLETED.value,
                output,
                descendants=descendants_taken(snapshot),
            )
        reason = str(snapshot.metadata.get(FAILED_REASON) or "failed")
        return ChildEnd(
            link.index,
            child.run_id,
            SnapshotStatus.FAILED.value,
            error=reason,
            descendants=descendants_taken(snapshot),
        )

    def _record_end(self, parent: RunRecord, end: ChildEnd) -> None:
        marker = waiting_for_children(parent.snapshot)
        if marker is None:
            return
        count = self.store.record_child_end(parent.run_id, int(marker["version"]), end)
        total = int(marker.get("count", 0))
        if end.failed and marker.get("failure") == FAIL_FAST:
            self._join(parent)  # at once: the parent's next step cancels the others
            return
        following = end.index + int(marker.get("concurrency", 1))
        if following < total:
            if not self._tree_waits(parent):
                self.cancel(parent, ROOT_GONE)
                return
            self._start(parent, marker, following)
        if count.ended >= total:
            self._join(parent)

    # -- joining --------------------------------------------------------------------------

    def _join(self, parent: RunRecord) -> None:
        """Resume the waiting ``parent`` with its children's outcome: once, however many
        reports race here (an optimistic-lock commit; a loser that finds the parent
        still waiting, changed by other bookkeeping, tries again with the new head)."""
        if not self._tree_waits(parent):
            # The top of its tree was cancelled (or joined early): the tree's cancel, a
            # delivery per level, may not have reached this run yet. It must not go on.
            self.cancel(parent, ROOT_GONE)
            return
        record: RunRecord | None = parent
        for _ in range(JOIN_ATTEMPTS):
            if record is None:
                return
            marker = waiting_for_children(record.snapshot)
            if marker is None or marker.get("version") != parent_marker_version(parent):
                # Joined, cancelled or failed meanwhile, perhaps by a copy of this delivery
                # that committed and then died before scheduling: this copy is acknowledged,
                # so the parent's next step must not depend on the other.
                schedule_next(self.scheduler, record)
                return
            if self._join_once(record, marker):
                return
            record = self.store.load_run(parent.run_id)
        raise TransientError(f"run {parent.run_id!r} kept changing while joining its children")

    def _join_once(self, parent: RunRecord, marker: Mapping[str, Any]) -> bool:
        total = int(marker.get("count", 0))
        version = int(marker["version"])
        outputs: list[Any] = [None] * total
        errors: list[dict[str, Any]] = []
        ended = reported = 0
        for end in self._ends(parent.run_id, version, total):
            ended += 1
            reported += end.descendants
            if end.failed:
                errors.append({"index": end.index, "runId": end.run_id, "error": end.error})
            else:
                outputs[end.index] = end.output
        taken = self._wait_took(marker, ended, len(errors), reported)
        summary = {key: value for key, value in marker.items() if key != INPUTS_DIGEST}
        summary.update(
            {
                "waiting": False,
                "ended": ended,
                "failed": len(errors),
                "descendants": int(marker.get("descendants", 0)) + taken,
            }
        )
        head = evolve(
            parent.snapshot,
            {
                "status": SnapshotStatus.ACTIVE,
                "version": parent.version + 1,
                "metadata": {**parent.snapshot.metadata, CHILD_RUNS: summary},
            },
        )
        result = self._transition(
            parent, head, Payload({"outputs": outputs, "errors": errors}, CHILDREN_SOURCE)
        )
        if not result.committed:
            return False
        log_event(
            "children_joined",
            f"{ended} of {total} child runs ended ({len(errors)} failed)",
            run_id=parent.run_id,
            workflow=parent.workflow,
            node=parent.snapshot.current_node_id,
            version=head.version,
            ended=ended,
            failed=len(errors),
        )
        return True

    def _ends(self, parent_id: str, version: int, total: int) -> Iterator[ChildEnd]:
        """The recorded ends of the wait of ``parent_id`` at ``version``, in index order."""
        after = -1
        while True:
            page = self.store.child_ends(parent_id, version, after_index=after, limit=ENDS_PAGE)
            yield from (end for end in page if 0 <= end.index < total)
            if len(page) < ENDS_PAGE:
                return
            after = page[-1].index

    def _wait_took(self, marker: Mapping[str, Any], ended: int, failed: int, reported: int) -> int:
        """What a wait took of its run's budget of descendants, once it is over with
        ``ended`` children ended (``failed`` of them failed), reporting ``reported``
        descendants of their own: the children it started, what they report, and for each
        started child not ended (a wait joined early, or cancelled) the whole share it may
        still use. Children are started ``concurrency`` at a time and one more per end,
        but under ``fail_fast`` not after a failed one (that joins), so no more than
        ``concurrency + ended`` were (``- failed`` under ``fail_fast``)."""
        total = int(marker.get("count", 0))
        concurrency = max(int(marker.get("concurrency", total) or 1), 1)
        followers = ended - failed if marker.get("failure") == FAIL_FAST else ended
        started = max(min(total, concurrency + followers), ended)
        share = child_share(marker, self.app.limits.max_descendants)
        return started + reported + (started - ended) * share

    def stop_siblings(self, parent: RunRecord) -> None:
        """Cancel the children still running of a wait that a failed child joined early
        (``fail_fast``).

        Done by the parent's next step, before its node runs, not by the join itself: a
        join is acknowledged once committed and scheduled, so a crash after it would lose
        cancels made there, while the parent's step is redelivered until it commits.
        Idempotent (ended children are skipped), and a no-op for any other step.
        """
        pending = parent.pending
        if pending is None or pending.source != CHILDREN_SOURCE:
            return
        summary = parent.snapshot.metadata.get(CHILD_RUNS)
        if not isinstance(summary, Mapping) or summary.get("failure") != FAIL_FAST:
            return
        if not summary.get("failed") or int(summary.get("ended", 0)) >= int(
            summary.get("count", 0)
        ):
            return  # no failure, or every child ended before the join
        self.cancel_children(parent.run_id, summary, SIBLING_FAILED)

    # -- cancelling -----------------------------------------------------------------------

    def cancel_children(self, parent_id: str, marker: Mapping[str, Any], reason: str) -> int:
        """Cancel every child of the wait ``marker`` that has not ended; how many."""
        version = int(marker.get("version", -1))
        cancelled = 0
        for index in range(int(marker.get("count", 0))):
            child = self.store.load_run(child_run_id(parent_id, version, index))
            if child is None or child.status.is_terminal:
                continue
            link = parent_link(child.snapshot)
            if link is None or (link.run_id, link.version, link.index) != (
                parent_id,
                version,
                index,
            ):
                continue
            if self.cancel(child, reason) is not None:
                cancelled += 1
        return cancelled

    def cancel(self, record: RunRecord, reason: str) -> RunRecord | None:
        """Fail ``record`` as cancelled; None if it ended meanwhile.

        A run that keeps committing steps (a busy child) makes a cancel lose its
        optimistic lock: the cancel reads the run again and retries, so it lands between
        two of its steps. Its children are cancelled after, by a delivery of their own
        (:func:`~refluxo.runtime.links.needs_cascade`), so that cancelling a large tree
        answers at once and a crash midway resumes the cascade.
        """
        current: RunRecord | None = record
        for _ in range(CANCEL_ATTEMPTS):
            if current is None:
                return None
            if current.status.is_terminal:
                # Its end's report, if the run that ended it died before scheduling that.
                schedule_next(self.scheduler, current)
                return None
            head = fail(current.snapshot, reason)
            head = evolve(head, {"metadata": {**head.metadata, CANCELLED_AT: self.app.clock()}})
            result = self._transition(current, head, None)
            if result.committed:
                assert result.record is not None
                self._log_cancelled(current, result.record, reason)
                return result.record
            current = self.store.load_run(record.run_id)
        raise TransientError(f"run {record.run_id!r} kept changing while being cancelled")

    @staticmethod
    def _log_cancelled(record: RunRecord, cancelled: RunRecord, reason: str) -> None:
        stored_reason = str(cancelled.snapshot.metadata.get(FAILED_REASON, reason))
        log_event(
            "run_cancelled",
            f"run cancelled: {stored_reason}",
            level=logging.WARNING,
            run_id=record.run_id,
            workflow=record.workflow,
            node=cancelled.snapshot.current_node_id,
            version=cancelled.version,
            failedReason=stored_reason,
        )

    def _cascade(self, record: RunRecord, marker: Mapping[str, Any]) -> None:
        """Cancel the children of a cancelled run, then mark its wait over."""
        self.cancel_children(record.run_id, marker, PARENT_CANCELLED)
        # What the wait took stays taken: its run reports it to its own parent at its end.
        ends = list(self._ends(record.run_id, int(marker["version"]), int(marker.get("count", 0))))
        reported = sum(end.descendants for end in ends)
        failed = sum(end.failed for end in ends)
        taken = int(marker.get("descendants", 0)) + self._wait_took(
            marker, len(ends), failed, reported
        )
        summary = {**marker, "waiting": False, "cancelled": True, "descendants": taken}
        head = evolve(
            record.snapshot,
            {
                "version": record.version + 1,
                "metadata": {**record.snapshot.metadata, CHILD_RUNS: summary},
            },
        )
        self._transition(record, head, None)

    # -- committing -----------------------------------------------------------------------

    def _transition(
        self, record: RunRecord, head: Snapshot, pending: Payload | None
    ) -> CommitResult:
        following = next_delivery(record.run_id, head)
        result = self.store.commit(
            StepCommit(
                run_id=record.run_id,
                expected_version=record.version,
                snapshot=head,
                pending=pending,
                next_delivery=following,
            )
        )
        if result.committed and not result.scheduled and following is not None:
            self.scheduler.schedule(following)
        if not result.committed:
            # The winner may have committed and then died before scheduling; this delivery
            # will be acknowledged, so the stored head's next delivery is scheduled here.
            stored = result.record or self.store.load_run(record.run_id)
            if stored is not None:
                schedule_next(self.scheduler, stored)
        return result


__all__ = ["CHILDREN_SOURCE", "ChildRuns", "mark_waiting", "take_inputs"]
