"""Parent and child runs as their heads record them.

A run that waits for child runs keeps them in ``metadata["childRuns"]`` (``waiting: true``);
a child keeps its parent in ``metadata["parentRun"]``. Both are plain snapshot metadata:
every store keeps them without a schema of its own, and ``GET /runs/{id}`` shows them.

Three pieces of bookkeeping are also kept there, each calling for one delivery until it
is done (:func:`refluxo.runtime.due.next_delivery`), and each making its run overdue for
the reconciler while it is not (:func:`refluxo.runtime.due.expected_at`), so that a
delivery a queue dropped is made again: a waiting parent whose children are not all
started yet (:func:`needs_start`), a parent cancelled while it waited whose children are
not cancelled yet (:func:`needs_cascade`), and an ended child whose end its parent has not
recorded yet (:func:`needs_report`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from refluxo.metadata import CHILD_RUNS, PARENT_RUN
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.ids import RUN_ID_PATTERN


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Where a child run reports its end: the parent, the wait (its version), the node and
    the child's index among its siblings; ``depth``: 1 for a child of a run a caller
    started, 2 for its children, and so on."""

    run_id: str
    version: int
    node: str
    index: int
    depth: int = 1
    budget: int | None = None
    """How many descendants this child may start in all (None: the app's limit): a run
    tree shares one budget, split between the children of each wait."""
    root: tuple[str, int] | None = None
    """The run a caller started at the top of this child's tree and the version of its
    wait (None when that is the parent): a tree grows only while its root waits, so
    cancelling the root stops every level at once, not one level per delivery."""

    def as_metadata(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "version": self.version,
            "node": self.node,
            "index": self.index,
            "depth": self.depth,
            **({} if self.budget is None else {"budget": self.budget}),
            **(
                {}
                if self.root is None
                else {"rootRunId": self.root[0], "rootVersion": self.root[1]}
            ),
        }

    @property
    def root_wait(self) -> tuple[str, int]:
        """The root's id and the version of its wait (the parent's for a first level)."""
        return self.root if self.root is not None else (self.run_id, self.version)


def child_run_id(parent_id: str, version: int, index: int) -> str:
    """The id of child ``index`` of the wait of ``parent_id`` at ``version``.

    Readable (``order-1.4.17``) when that is a valid run id, else a hash of the three: the
    same child always gets the same id, so a redelivered step starts no duplicate.
    """
    readable = f"{parent_id}.{version}.{index}"
    if RUN_ID_PATTERN.fullmatch(readable):
        return readable
    key = f"{parent_id}\x00{version}\x00{index}"
    return "child-" + hashlib.sha256(key.encode()).hexdigest()[:40]


_CHILD_ID = re.compile(r".+\.[0-9]+\.[0-9]+|child-[0-9a-f]{40}")


def is_child_run_id(run_id: str) -> bool:
    """Whether ``run_id`` has the shape of a child run's id (:func:`child_run_id`): such
    ids are the runtime's, and a caller may not take one (it would stand in a map's way)."""
    return _CHILD_ID.fullmatch(run_id) is not None


def waiting_for_children(snapshot: Snapshot) -> Mapping[str, Any] | None:
    """The children a paused run waits for (its ``childRuns`` metadata), or None."""
    if snapshot.status != SnapshotStatus.PAUSED:
        return None
    marker = snapshot.metadata.get(CHILD_RUNS)
    if isinstance(marker, Mapping) and marker.get("waiting") is True:
        return marker
    return None


def parent_link(snapshot: Snapshot) -> ParentLink | None:
    """The parent a child run reports to, or None for a run started by a caller."""
    link = snapshot.metadata.get(PARENT_RUN)
    if not isinstance(link, Mapping):
        return None
    run_id, version, node, index = (
        link.get("runId"),
        link.get("version"),
        link.get("node"),
        link.get("index"),
    )
    if (
        isinstance(run_id, str)
        and isinstance(node, str)
        and isinstance(version, int)
        and isinstance(index, int)
        and not isinstance(version, bool)
        and not isinstance(index, bool)
    ):
        depth, budget = link.get("depth", 1), link.get("budget")
        root_id, root_version = link.get("rootRunId"), link.get("rootVersion")
        root = (
            (root_id, root_version)
            if isinstance(root_id, str)
            and isinstance(root_version, int)
            and not isinstance(root_version, bool)
            else None
        )
        return ParentLink(
            run_id,
            version,
            node,
            index,
            depth if isinstance(depth, int) else 1,
            budget if isinstance(budget, int) and not isinstance(budget, bool) else None,
            root,
        )
    return None


def depth_of(snapshot: Snapshot) -> int:
    """How deep ``snapshot``'s run is among child runs: 0 for a run a caller started."""
    link = parent_link(snapshot)
    return 0 if link is None else link.depth


def budget_of(snapshot: Snapshot, limit: int) -> int:
    """How many descendants ``snapshot``'s run may start in all: ``limit`` for a run a
    caller started, its share of its parent's budget for a child (what its earlier waits
    took is :func:`descendants_taken`)."""
    link = parent_link(snapshot)
    return limit if link is None or link.budget is None else min(link.budget, limit)


def share_of_each_child(budget: int, count: int) -> int:
    """The descendants each of ``count`` children may start, when their wait may start
    ``budget`` runs: the wait takes the children themselves and splits the rest evenly."""
    return max(budget - count, 0) // max(count, 1)


def child_share(marker: Mapping[str, Any], limit: int) -> int:
    """The descendants each child of the wait ``marker`` may start: none if its workflow
    starts none (``fanOut``; a wait marked before that was recorded counts as one whose
    workflow may), else an even part of what the wait may start past its children
    (``limit`` for a wait marked before budgets were)."""
    if marker.get("fanOut", True) is not True:
        return 0
    budget = marker.get("budget", limit)
    return share_of_each_child(_count(budget), max(_count(marker.get("count")), 1))


def descendants_taken(snapshot: Snapshot) -> int:
    """How many descendants ``snapshot``'s run has taken from its budget: every run its
    joined waits started, their own descendants included (``childRuns.descendants``), and
    for a run that ended while it waited, the whole of what that wait could start.

    Counted at each join from what the children report at their end, so that a run that
    waits again (a ``map`` in a loop) waits on what is left, not on its whole share again.
    """
    marker = snapshot.metadata.get(CHILD_RUNS)
    if not isinstance(marker, Mapping):
        return 0
    taken = _count(marker.get("descendants"))
    if marker.get("waiting") is True and snapshot.status.is_terminal:
        count = _count(marker.get("count"))
        taken += count + count * child_share(marker, 0)
    return taken


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def needs_start(snapshot: Snapshot) -> Mapping[str, Any] | None:
    """The wait of a run whose children are not all started yet, or None."""
    marker = waiting_for_children(snapshot)
    return marker if marker is not None and marker.get("started") is not True else None


def needs_cascade(snapshot: Snapshot) -> Mapping[str, Any] | None:
    """The wait of a run cancelled (or failed) while it waited for children that are not
    cancelled yet, or None."""
    if snapshot.status != SnapshotStatus.FAILED:
        return None
    marker = snapshot.metadata.get(CHILD_RUNS)
    if isinstance(marker, Mapping) and marker.get("waiting") is True:
        return marker
    return None


def needs_report(snapshot: Snapshot) -> ParentLink | None:
    """The parent an ended child must still report to, or None (reported, or no parent)."""
    if not snapshot.status.is_terminal:
        return None
    link = snapshot.metadata.get(PARENT_RUN)
    if isinstance(link, Mapping) and link.get("reported") is True:
        return None
    return parent_link(snapshot)


def child_bookkeeping(snapshot: Snapshot) -> bool:
    """Children to start, children to cancel, or an end to report: one delivery's work."""
    return (
        needs_start(snapshot) is not None
        or needs_cascade(snapshot) is not None
        or needs_report(snapshot) is not None
    )


def as_reported(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A child's ``metadata`` once its end is recorded by its parent."""
    return {**metadata, PARENT_RUN: {**metadata[PARENT_RUN], "reported": True}}


__all__ = [
    "ParentLink",
    "as_reported",
    "budget_of",
    "child_bookkeeping",
    "child_run_id",
    "child_share",
    "depth_of",
    "descendants_taken",
    "is_child_run_id",
    "needs_cascade",
    "needs_report",
    "needs_start",
    "parent_link",
    "share_of_each_child",
    "waiting_for_children",
]
