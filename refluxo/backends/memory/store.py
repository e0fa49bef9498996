"""The in-memory :class:`~refluxo.runtime.ports.SnapshotStore`.

The layout is the durable stores' layout, in dictionaries: per run a small *head* (the
snapshot without its context, plus bookkeeping) and an append-only map of *results* keyed
by ``seq``, with a per-node index (node id to the seqs of its results, in node-index order,
the node ids in first-result order). A commit replaces the head and appends, it never
rewrites the history.

Why values are kept as JSON text (the encoding of :mod:`refluxo.runtime.records`) rather
than as the objects handed in: a stored run must not change when a caller mutates what it
passed or got back (a snapshot's ``metadata`` is a plain dict), and every durable store
round-trips through that same encoding, so a value it would alter (a tuple read back as a
list, an integer key read back as a string) is altered here too. A test that passes on
memory then passes for the same reason elsewhere.

Why one lock: each operation is a handful of dictionary operations, and holding one lock
around each makes it atomic, which is all the isolation the ports promise (a commit is
applied whole or not at all; a read sees a commit whole or not at all). Nothing blocks on
I/O, so nothing here raises :class:`~refluxo.errors.TransientError`.

Commit tokens: the store issues a :class:`HeadStamp` with every record and honours one in
:attr:`~refluxo.runtime.ports.StepCommit.expected_token`, refusing the commit after any
change to the head since the stamped read, even one that kept the version. The check
saves nothing here (the version is checked under the same lock); it is implemented so
that the semantics every token-issuing store must follow are stated, and exercised, once.

No transactional outbox: ``first_delivery``, ``next_delivery`` and ``delivery`` are ignored
and every result says ``scheduled=False``, so the dispatcher schedules after committing.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from refluxo.model import NodeResult, SnapshotStatus
from refluxo.runtime.cursor import decode_cursor, encode_cursor
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import (
    AppendedResult,
    ChildEnd,
    CommitResult,
    CommitToken,
    Delivery,
    JoinCount,
    Payload,
    RunPage,
    RunRecord,
    StepCommit,
    TimelineEntry,
)
from refluxo.runtime.records import (
    decode_head,
    decode_json,
    decode_result,
    encode_head,
    encode_json,
    encode_result,
)
from refluxo.runtime.stored import within_page_bytes

Clock = Callable[[], int]
"""Epoch milliseconds."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_store_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class HeadStamp(CommitToken):
    """This store's commit token: the issuing store and the write that made the head.

    Every write of a head (its creation, each commit) takes a new ``serial`` from the store,
    so a stamp matches exactly one state of one run's head.
    """

    store: int
    serial: int


@dataclass(slots=True)
class _Result:
    node_id: str
    text: str


@dataclass(slots=True)
class _Run:
    """One run: its head as stored, and its results."""

    workflow: str
    definition_version: str
    created_at: int
    input: str
    head: str
    status: str
    version: int
    pending: str | None
    updated_at: int
    serial: int
    due_at: int | None
    """When the head's next step is expected (:func:`~refluxo.runtime.due.expected_at`);
    None when nothing is expected. What :meth:`MemoryStore.overdue_runs` reads."""
    results: dict[int, _Result] = field(default_factory=dict)
    """By ``seq``: 0, 1, 2... (a commit must continue the sequence)."""
    by_node: dict[str, list[int]] = field(default_factory=dict)
    """Node id to the seqs of its results, ``[node_index] -> seq``; keys in first-result order."""


def _pending_text(pending: Payload | None) -> str | None:
    return None if pending is None else pending.encode()


class MemoryHistory:
    """:class:`~refluxo.runtime.ports.HistoryReader` over one run's results in a store.

    Reads the committed results as they are when asked (each call is atomic).
    """

    def __init__(self, store: MemoryStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id

    def count(self, node_id: str) -> int:
        return len(self._store._seqs(self._run_id, node_id))

    def get(self, node_id: str, index: int) -> NodeResult:
        seqs = self._store._seqs(self._run_id, node_id)
        if not 0 <= index < len(seqs):
            raise IndexError(f"no result {index} for node {node_id!r}")
        return self._store._result(self._run_id, seqs[index])

    def all(self, node_id: str) -> list[NodeResult]:
        return [
            self._store._result(self._run_id, seq)
            for seq in self._store._seqs(self._run_id, node_id)
        ]

    def node_ids(self) -> list[str]:
        return self._store._node_ids(self._run_id)


class MemoryStore:
    """Runs, results and definitions in dictionaries, behind one lock.

    Args:
        clock: Epoch milliseconds, for a committed head's ``updated_at``.
    """

    def __init__(self, *, clock: Clock = wall_clock_ms) -> None:
        self._clock = clock
        self._id = next(_store_ids)
        self._serials = itertools.count(1)
        self._lock = threading.Lock()
        self._runs: dict[str, _Run] = {}
        self._definitions: dict[str, tuple[str, str]] = {}
        self._ends: dict[tuple[str, int], dict[int, ChildEnd]] = {}
        self._join_counts: dict[tuple[str, int], JoinCount] = {}
        self._inputs: dict[tuple[str, int, str], list[str]] = {}

    # -- joining child runs ----------------------------------------------------------------

    def record_child_end(self, parent_id: str, version: int, end: ChildEnd) -> JoinCount:
        output = None if end.failed else encode_json(end.output)
        with self._lock:
            ends = self._ends.setdefault((parent_id, version), {})
            count = self._join_counts.get((parent_id, version), JoinCount(0, 0))
            if end.index not in ends:
                # Kept as stored (the output as its JSON), as the other stores keep it.
                ends[end.index] = dataclasses.replace(end, output=output)
                count = JoinCount(count.ended + 1, count.failed + end.failed)
                self._join_counts[(parent_id, version)] = count
            return count

    def child_ends(
        self, parent_id: str, version: int, *, after_index: int = -1, limit: int = 1000
    ) -> list[ChildEnd]:
        with self._lock:
            ends = dict(self._ends.get((parent_id, version), {}))
        indices = sorted(index for index in ends if index > after_index)[:limit]
        return [
            dataclasses.replace(ends[index], output=decode_json(ends[index].output))
            for index in indices
        ]

    def put_child_inputs(
        self, parent_id: str, version: int, digest: str, inputs: Sequence[Any]
    ) -> None:
        encoded = [encode_json(value) for value in inputs]
        with self._lock:
            self._inputs.setdefault((parent_id, version, digest), encoded)

    def child_input(self, parent_id: str, version: int, digest: str, index: int) -> Any:
        with self._lock:
            inputs = self._inputs.get((parent_id, version, digest))
        if inputs is None or not 0 <= index < len(inputs):
            raise LookupError(f"no input {index} kept for run {parent_id!r} at version {version}")
        return decode_json(inputs[index])

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, record: RunRecord, first_delivery: Delivery | None = None) -> CommitResult:
        """Create the run unless its id exists (then ``committed=False`` and the stored run).

        ``first_delivery`` is not recorded: the caller schedules it (``scheduled=False``).
        """
        snapshot = record.snapshot
        with self._lock:
            existing = self._runs.get(record.run_id)
            if existing is not None:
                return CommitResult(committed=False, record=self._record(record.run_id, existing))
            run = _Run(
                workflow=record.workflow,
                definition_version=record.definition_version,
                created_at=record.created_at,
                input=encode_json(record.input),
                head=encode_head(snapshot),
                status=snapshot.status.value,
                version=snapshot.version,
                pending=_pending_text(record.pending),
                updated_at=record.updated_at,
                serial=next(self._serials),
                due_at=expected_at(snapshot, record.updated_at),
            )
            self._runs[record.run_id] = run
            return CommitResult(committed=True, record=self._record(record.run_id, run))

    def load_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else self._record(run_id, run)

    def commit(self, commit: StepCommit) -> CommitResult:
        """Replace the head and append the results, if the head is still the expected one.

        Refused (``committed=False``, nothing written) when the run is unknown, its version
        is not ``expected_version``, or ``expected_token`` is given and the head was written
        since that token was issued. The results must continue the run: ``seq`` from its
        result count on, each ``node_index`` from its node's count on; anything else is a
        caller's bug and raises :class:`ValueError`, before anything is written.

        Raises:
            TypeError: ``expected_token`` was not issued by this store.
        """
        with self._lock:
            run = self._runs.get(commit.run_id)
            if run is None:
                return CommitResult(committed=False)
            if not self._current(run, commit.expected_token, commit.expected_version):
                return CommitResult(committed=False, record=self._record(commit.run_id, run))
            self._check_continues(commit.run_id, run, commit.results)
            for entry in commit.results:
                run.results[entry.seq] = _Result(entry.node_id, encode_result(entry.result))
                run.by_node.setdefault(entry.node_id, []).append(entry.seq)
            snapshot = commit.snapshot
            run.head = encode_head(snapshot)
            run.status = snapshot.status.value
            run.version = snapshot.version
            run.pending = _pending_text(commit.pending)
            run.updated_at = self._clock()
            run.serial = next(self._serials)
            run.due_at = expected_at(snapshot, run.updated_at)
            return CommitResult(committed=True, record=self._record(commit.run_id, run))

    def history(self, record: RunRecord) -> MemoryHistory:
        return MemoryHistory(self, record.run_id)

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return []
            first = max(after_seq + 1, 0)
            seqs = range(first, min(len(run.results), first + max(limit, 0)))
            found = list(within_page_bytes(((seq, run.results[seq]) for seq in seqs), _result_size))
        return [TimelineEntry(seq, r.node_id, decode_result(r.text)) for seq, r in found]

    def list_runs(
        self, *, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs newest ``created_at`` first, ties by run id descending, as every store."""
        after = decode_cursor(cursor) if cursor is not None else None
        with self._lock:
            matching = [
                (run.created_at, run_id, run)
                for run_id, run in self._runs.items()
                if status is None or run.status == status
            ]
            matching.sort(key=lambda row: (row[0], row[1]), reverse=True)
            if after is not None:
                matching = [row for row in matching if (row[0], row[1]) < after]
            runs = [self._record(run_id, run) for _, run_id, run in matching[:limit]]
        next_cursor = None
        if runs and len(matching) > limit:
            next_cursor = encode_cursor(runs[-1].created_at, runs[-1].run_id)
        return RunPage(runs=runs, next_cursor=next_cursor)

    def overdue_runs(
        self, expected_before: int, *, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs expected at or before ``expected_before``, oldest expectation first, ties by
        run id (ascending); exact (the expected time of each head is kept as it is)."""
        after = decode_cursor(cursor) if cursor is not None else None
        with self._lock:
            matching = sorted(
                (
                    (run.due_at, run_id, run)
                    for run_id, run in self._runs.items()
                    if run.due_at is not None and run.due_at <= expected_before
                ),
                key=lambda row: (row[0], row[1]),
            )
            if after is not None:
                matching = [row for row in matching if (row[0], row[1]) > after]
            page = matching[: max(limit, 0)]
            runs = [self._record(run_id, run) for _, run_id, run in page]
            last = (page[-1][0], page[-1][1]) if page else None
        next_cursor = None
        if last is not None and len(matching) > len(page):
            next_cursor = encode_cursor(*last)
        return RunPage(runs=runs, next_cursor=next_cursor)

    # -- definitions ------------------------------------------------------------------------

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        """Keep the first definition stored under ``version`` (versions are content hashes)."""
        text = encode_json(definition)
        with self._lock:
            self._definitions.setdefault(version, (workflow, text))

    def get_definition(self, version: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._definitions.get(version)
        if found is None:
            return None
        definition: dict[str, Any] = decode_json(found[1])
        return definition

    # -- internals (called with the lock held, or taking it) --------------------------------

    def _record(self, run_id: str, run: _Run) -> RunRecord:
        return RunRecord(
            run_id=run_id,
            workflow=run.workflow,
            definition_version=run.definition_version,
            snapshot=decode_head(run.head),
            created_at=run.created_at,
            updated_at=run.updated_at,
            result_count=len(run.results),
            input=decode_json(run.input),
            pending=Payload.decode(run.pending),
            token=HeadStamp(self._id, run.serial),
        )

    def _current(self, run: _Run, token: CommitToken | None, expected_version: int) -> bool:
        """Is the stored head the one the commit was computed from?"""
        if token is not None:
            if not isinstance(token, HeadStamp) or token.store != self._id:
                raise TypeError(
                    f"expected_token must be a HeadStamp issued by this MemoryStore, not {token!r}"
                )
            if token.serial != run.serial:
                return False
        return run.version == expected_version

    @staticmethod
    def _check_continues(run_id: str, run: _Run, results: Sequence[AppendedResult]) -> None:
        counts: dict[str, int] = {}
        for offset, entry in enumerate(results):
            node_count = counts.get(entry.node_id, len(run.by_node.get(entry.node_id, ())))
            if entry.seq != len(run.results) + offset or entry.node_index != node_count:
                raise ValueError(
                    f"run {run_id!r}: result (seq {entry.seq}, node {entry.node_id!r} index "
                    f"{entry.node_index}) does not continue the history (next seq "
                    f"{len(run.results) + offset}, next index of that node {node_count})"
                )
            counts[entry.node_id] = node_count + 1

    def _seqs(self, run_id: str, node_id: str) -> list[int]:
        with self._lock:
            run = self._runs.get(run_id)
            return [] if run is None else list(run.by_node.get(node_id, ()))

    def _result(self, run_id: str, seq: int) -> NodeResult:
        with self._lock:
            text = self._runs[run_id].results[seq].text
        return decode_result(text)

    def _node_ids(self, run_id: str) -> list[str]:
        with self._lock:
            run = self._runs.get(run_id)
            return [] if run is None else list(run.by_node)


__all__ = ["HeadStamp", "MemoryHistory", "MemoryStore"]


def _result_size(found: tuple[int, Any]) -> int:
    return len(found[1].text)
