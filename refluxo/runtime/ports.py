"""The runtime's ports: where runs and definitions are kept, and how steps are delivered.

The dispatcher is written once against these protocols; backends implement them (the
in-memory reference, the embedded SQLite default, Firestore with Cloud Tasks). Every call
is synchronous: one delivery executes one step, and every call here is a short read or a
single transaction. A retryable backend failure raises
:class:`refluxo.errors.TransientError`, never anything the dispatcher would mistake for a
conflict or a node error.

Optional capabilities are declared, never assumed: a store that records a commit's next
delivery in the commit's own transaction (a transactional outbox) says so by returning
``CommitResult(scheduled=True)``, and only the composition root, which pairs such a store
with its own scheduler, turns that capability on.

Storage layout, whatever the backend: a small *head* per run (the snapshot without its
context, plus run bookkeeping) and an append-only list of *results*. A step's commit writes
the head and the step's own results, O(size of the step's result), never the history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from refluxo.model import NodeResult, Snapshot, SnapshotStatus
from refluxo.runtime.ids import delivery_name


@dataclass(frozen=True, slots=True)
class Payload:
    """A value waiting to be handed to the next step as its ``external_payload``.

    Boxed so that ``None`` (a legitimate payload) differs from "no payload". ``source``
    says where it came from: the run's ``"input"`` or a ``"resume"``.
    """

    value: Any
    source: str = "input"

    def encode(self) -> str:
        """The JSON text stores keep."""
        return json.dumps({"value": self.value, "source": self.source}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Payload | None:
        if text is None:
            return None
        loaded = json.loads(text)
        return cls(loaded["value"], loaded.get("source", "input"))


class CommitToken:
    """Opaque proof of a run's head exactly as a store read it (``RunRecord.token``).

    Handed back in :attr:`StepCommit.expected_token`, it lets the store that issued it
    commit without reading the head again, refusing the commit if the head changed in any
    way since. Only the issuing store looks inside; stores subclass it.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's head: everything about it except its results.

    ``snapshot.context`` is empty here; results are read through :class:`HistoryReader`.
    ``token`` is the issuing store's :class:`CommitToken` for this exact head, or ``None``.
    ``node_counts`` is every node's committed result count, in first-result order, when the
    store knows it without a read (a run with no results, a record a commit returned), or
    ``None``; held in memory only, never stored, and not part of a record's equality.
    """

    run_id: str
    workflow: str
    definition_version: str
    snapshot: Snapshot
    created_at: int
    updated_at: int
    result_count: int = 0
    input: Any = None
    pending: Payload | None = None
    token: CommitToken | None = None
    node_counts: Mapping[str, int] | None = field(default=None, compare=False, repr=False)

    @property
    def version(self) -> int:
        return self.snapshot.version

    @property
    def status(self) -> SnapshotStatus:
        return self.snapshot.status


@dataclass(frozen=True, slots=True)
class AppendedResult:
    """One result to append: its position in the run (``seq``) and in its node's list."""

    seq: int
    node_id: str
    node_index: int
    result: NodeResult


@dataclass(frozen=True, slots=True)
class Delivery:
    """ "Execute a step of run ``run_id`` at ``version``, not before ``due_at`` (epoch ms).

    ``hop`` counts re-deliveries of one due time that arrived early (a delay longer than a
    queue allows is chained: each link arrives early and schedules the next hop). Its
    :attr:`name` is a hash of all four fields: the same delivery always has the same name,
    which is what makes scheduling idempotent.
    """

    run_id: str
    version: int
    due_at: int = 0
    hop: int = 0
    platform_retries: int = field(default=0, compare=False)
    """How often the transport already retried this delivery without an answer (a
    timeout, a crash): not part of its identity."""
    _name: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        """Computed once per object: a step's commit names the delivery it records and,
        one step later, the same object again when it marks that delivery done."""
        known = self._name
        if known is None:
            known = delivery_name(self.run_id, self.version, self.due_at, self.hop)
            object.__setattr__(self, "_name", known)
        return known


@dataclass(frozen=True, slots=True)
class StepCommit:
    """A new head for a run, valid only if the stored version is ``expected_version``.

    ``next_delivery`` is the delivery the new head needs (``None``: it waits for nobody),
    and ``delivery`` the one being processed, if any. A store with a transactional outbox
    records the first and marks the second done in the commit's own transaction, and
    answers ``scheduled=True``; any other store ignores both and the dispatcher schedules.

    ``expected_token`` is the :attr:`RunRecord.token` of the record the commit was computed
    from (``None``: not given). The store that issued it may then skip reading the head:
    the commit is applied only if the head is still exactly that one, so it is refused
    (``committed=False``) after *any* change to the head, not only a new version.

    ``expected_counts`` is the :attr:`RunRecord.node_counts` of that record (``None``: not
    known); a store that returns the committed record gives it these counts plus the
    commit's results (:func:`counts_after`), so the next step needs no count query.
    """

    run_id: str
    expected_version: int
    snapshot: Snapshot
    results: Sequence[AppendedResult] = ()
    pending: Payload | None = None
    next_delivery: Delivery | None = None
    delivery: Delivery | None = None
    expected_token: CommitToken | None = None
    expected_counts: Mapping[str, int] | None = None


def counts_after(
    counts: Mapping[str, int] | None, results: Sequence[AppendedResult]
) -> Mapping[str, int] | None:
    """Node counts once ``results`` are appended to a history of ``counts`` (a node seen
    for the first time goes last); ``None`` when ``counts`` is not known."""
    if counts is None or not results:
        return counts
    after = dict(counts)
    for entry in results:
        after[entry.node_id] = entry.node_index + 1
    return after


@dataclass(frozen=True, slots=True)
class CommitResult:
    """``committed`` is false when the stored version differed (a lost race).

    ``scheduled`` is true when the store recorded ``next_delivery`` itself, atomically with
    the commit (and marked ``delivery`` done); otherwise the dispatcher schedules after the
    commit.
    """

    committed: bool
    scheduled: bool = False
    record: RunRecord | None = None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One committed result, in commit order."""

    seq: int
    node_id: str
    result: NodeResult


@dataclass(frozen=True, slots=True)
class RunPage:
    """A page of runs, newest created first, and the cursor for the next page (or None)."""

    runs: list[RunRecord] = field(default_factory=list)
    next_cursor: str | None = None


@runtime_checkable
class HistoryReader(Protocol):
    """Reads one run's committed results, per node, without loading the whole history."""

    def count(self, node_id: str) -> int:
        """How many results ``node_id`` has."""
        ...

    def get(self, node_id: str, index: int) -> NodeResult:
        """The result at ``index`` (0-based, non-negative, < count) of ``node_id``."""
        ...

    def all(self, node_id: str) -> list[NodeResult]:
        """Every result of ``node_id``, oldest first."""
        ...

    def node_ids(self) -> list[str]:
        """The ids of the nodes that have at least one result, in first-result order."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """Durable runs: heads committed with an optimistic lock, results appended."""

    def create_run(self, record: RunRecord, first_delivery: Delivery | None = None) -> CommitResult:
        """Create the run if ``record.run_id`` is new.

        Returns ``committed=False`` with the stored record when the id already exists. A
        store with a transactional outbox records ``first_delivery`` with the run and
        answers ``scheduled=True``.
        """
        ...

    def load_run(self, run_id: str) -> RunRecord | None:
        """The run's head, or ``None`` if there is no such run."""
        ...

    def commit(self, commit: StepCommit) -> CommitResult:
        """Atomically replace the head and append results if the version still matches.

        Exactly once: a commit whose expected version (or, when given, whose expected
        token) is stale changes nothing and returns ``committed=False``. Transient backend
        failures raise :class:`~refluxo.errors.TransientError`, never a conflict. A commit
        whose reply was lost and is sent again reports ``committed=True`` if the first copy
        was applied, where the store can tell.
        """
        ...

    def history(self, record: RunRecord) -> HistoryReader:
        """A reader of the committed results of the run ``record`` was loaded for."""
        ...

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        """Committed results with ``seq > after_seq``, in commit order: at most ``limit``,
        and no more once their JSON passes :data:`~refluxo.runtime.stored.TIMELINE_PAGE_BYTES`
        (at least one); a caller pages on from the last ``seq`` until the run's result
        count."""
        ...

    def list_runs(
        self, *, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs, optionally of one status, newest created first (ties by id, descending)."""
        ...

    def overdue_runs(
        self, expected_before: int, *, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs whose next step was expected at or before ``expected_before`` (epoch ms).

        "Expected" is :func:`refluxo.runtime.due.expected_at` of the stored head: finished
        runs and runs paused until a caller resumes them are never returned. The page holds
        every such run (oldest expectation first, ties by id) and may also hold runs
        expected a little later, which a store that indexes a coarser copy of the time
        cannot tell apart: the caller checks each record. The query is indexed: its cost
        grows with the page, not with the number of runs. ``cursor`` continues a page.
        """
        ...


@runtime_checkable
class RetentionSweeper(Protocol):
    """A store whose expiry of finished runs is finished by a periodic sweep.

    Firestore deletes expired documents one by one (TTL), so a finished run's results each
    carry the expiry too; stamping them may be interrupted, and the reconciler's pass
    completes it (:meth:`RunService.reconcile`).
    """

    def finish_retention(self, limit: int = 100) -> int:
        """Complete the expiry of up to ``limit`` finished runs; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class ChildEnd:
    """How one child run ended, as its parent's join reads it.

    ``index`` is the child's place among its siblings; ``status`` its final status
    (``"completed"`` or ``"failed"``); ``output`` the output of its last step when it
    completed, ``error`` its ``failedReason`` when it failed; ``descendants`` how many runs
    its own waits started, their descendants included (what it took of its parent's
    budget of descendants, :func:`~refluxo.runtime.links.descendants_taken`).
    """

    index: int
    run_id: str
    status: str
    output: Any = None
    error: str | None = None
    descendants: int = 0

    @property
    def failed(self) -> bool:
        return self.status != SnapshotStatus.COMPLETED.value


@dataclass(frozen=True, slots=True)
class JoinCount:
    """How many children of one wait have ended, and how many of them failed."""

    ended: int
    failed: int


@runtime_checkable
class JoinLedger(Protocol):
    """Where the ends of a parent's child runs are recorded, each exactly once.

    A wait is identified by the parent run and the version at which it paused. Recording
    the same child twice (a redelivered notice, two racing ones) changes nothing and
    answers the same counts. The counts must not be one value every child updates under
    contention (Firestore sustains about one write per second per document): a ledger
    keeps one entry per child and counts in shards, or in a store that serialises writes
    anyway (SQLite).
    """

    def record_child_end(self, parent_id: str, version: int, end: ChildEnd) -> JoinCount:
        """Record ``end`` if its child is not recorded yet; the wait's counts after it."""
        ...

    def child_ends(
        self, parent_id: str, version: int, *, after_index: int = -1, limit: int = 1000
    ) -> list[ChildEnd]:
        """Recorded ends of the wait with ``index > after_index``, by index."""
        ...

    def put_child_inputs(
        self, parent_id: str, version: int, digest: str, inputs: Sequence[Any]
    ) -> None:
        """Keep the inputs of a wait's children, under ``digest`` (a hash of them).

        Kept apart from the parent's head, so that the head stays small however many
        children it waits for: every child's report reads that head. Idempotent: the same
        digest always names the same inputs. Written before the commit that starts the
        wait; inputs of a commit that lost its race are never read (another digest, or the
        same inputs).
        """
        ...

    def child_input(self, parent_id: str, version: int, digest: str, index: int) -> Any:
        """The input of child ``index`` kept by :meth:`put_child_inputs`; ``LookupError``
        if there is none."""
        ...


@runtime_checkable
class DefinitionStore(Protocol):
    """Workflow definitions, content-addressed: a run executes the graph it started with."""

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        """Store a workflow definition under its content hash (idempotent)."""
        ...

    def get_definition(self, version: str) -> dict[str, Any] | None:
        """The definition stored under ``version``, or ``None``."""
        ...


@runtime_checkable
class SnapshotStore(RunStore, DefinitionStore, JoinLedger, Protocol):
    """What a storage backend provides: runs, the definitions they execute, and the
    ledger that joins child runs."""


@runtime_checkable
class Scheduler(Protocol):
    """Delivers "step run R at version V" at a time, at least once."""

    def schedule(self, delivery: Delivery) -> None:
        """Arrange one delivery of ``delivery`` at or after ``delivery.due_at``.

        Idempotent while pending: scheduling the same delivery again before it arrived does
        not create a second one. Scheduling it again after it arrived delivers it at most
        once more (the dispatcher finds such a duplicate stale). A scheduler that can drop
        a delivery (Cloud Tasks deletes a task after its last retry) must deliver it again
        when asked, rather than take the dropped one's name for "scheduled".
        """
        ...
