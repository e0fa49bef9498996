"""When a run's next step is due: what the scheduler is asked for and the reconciler checks.

Both are read off the run's head, never stored separately as the truth: a store may index
a copy (to find overdue runs quickly), but the head decides.
"""

from __future__ import annotations

import math

from refluxo.metadata import RESUME_AT
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.links import child_bookkeeping
from refluxo.runtime.ports import Delivery, RunRecord, Scheduler


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
        # A fractional time (written by @refluxo/core) is due at the next whole ms.
        return math.ceil(retry.next_retry_at or 0) if retry is not None else 0
    if status == SnapshotStatus.PAUSED:
        resume_at = snapshot.metadata.get(RESUME_AT)
        if isinstance(resume_at, int | float) and not isinstance(resume_at, bool):
            return int(resume_at)
    return None


def expected_at(snapshot: Snapshot, committed_at: int) -> int | None:
    """The time (epoch ms) by which the head committed at ``committed_at`` should have been
    followed by its next step, or None if nothing is expected (finished, or paused until a
    caller resumes it).

    A step due "now" is expected at its commit time; a retry or a timed pause at its own
    time, or at the commit time if that is later; child-run bookkeeping still to do
    (children to start or to cancel, an end to report) at the commit time. A run whose
    expected time lies further in the past than a grace period has stalled: its delivery
    was lost.
    """
    due = due_time(snapshot)
    if due is None:
        return committed_at if child_bookkeeping(snapshot) else None
    return max(due, committed_at)


def next_delivery(run_id: str, head: Snapshot) -> Delivery | None:
    """The delivery a committed ``head`` needs, or None if it waits for nobody.

    Its next step when one is due (:func:`due_time`); else, at its own version, the
    delivery that starts a waiting run's children, cancels a cancelled run's children, or
    reports an ended child to its parent (:mod:`refluxo.runtime.children`).
    """
    due = due_time(head)
    if due is not None:
        return Delivery(run_id, head.version, due)
    if child_bookkeeping(head):
        return Delivery(run_id, head.version, 0)
    return None


def schedule_next(scheduler: Scheduler, record: RunRecord) -> None:
    """Schedule the delivery the stored ``record``'s head calls for, if any.

    Idempotent (a delivery's name is derived from the run, version and due time), so any
    copy of a delivery that finds the run moved on can make sure the winner's next step
    does not depend on the winner having lived to schedule it.
    """
    following = next_delivery(record.run_id, record.snapshot)
    if following is not None:
        scheduler.schedule(following)


__all__ = ["due_time", "expected_at", "next_delivery", "schedule_next"]
