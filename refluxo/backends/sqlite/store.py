"""The embedded :class:`~refluxo.runtime.ports.SnapshotStore` on SQLite.

Layout: ``runs`` holds one small head row per run (the snapshot without its context);
``results`` holds one row per committed node result, keyed ``(run_id, seq)`` and indexed
``(run_id, node_id, node_index)``, so a step reads and writes O(1) rows whatever the length
of the history. Given its scheduler's :class:`~refluxo.backends.sqlite.outbox.SqliteOutbox`
(the composition root pairs them), a commit also records the run's next delivery and marks
the current one done in the same transaction: one durable write per step, and no window
between commit and schedule. Without one it is a plain store and the dispatcher schedules.

Every read and write checks a connection out of the database's pool for just that
operation, and SQLite failures that may pass (busy, I/O error, disk full) leave as
:class:`~refluxo.errors.TransientError` (see :mod:`refluxo.backends.sqlite.db`), here and
in the history readers, so the dispatcher retries the delivery and the HTTP API answers 503.

Records carry no commit token, and commits ignore ``expected_token``: the commit's
``UPDATE ... WHERE version = ?`` already checks the head without reading it first. A record
carries its history's :attr:`~refluxo.runtime.ports.RunRecord.node_counts` when they are
known without a query: for a run with no results yet, and for every record a commit
returns (the counts it was computed from, plus what it appended). A step that goes on with
the record its commit returned therefore reads no count at all.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import immutables

from refluxo.backends.sqlite.db import SqliteDatabase, is_transient
from refluxo.backends.sqlite.outbox import Recorded, SqliteOutbox
from refluxo.backends.sqlite.reader import timeline_rows
from refluxo.model import NodeResult, SnapshotStatus
from refluxo.runtime.cursor import decode_cursor, encode_cursor
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import (
    AppendedResult,
    ChildEnd,
    CommitResult,
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
from refluxo.steps import Clock, wall_clock_ms

_RUN_COLUMNS = (
    "run_id, workflow, definition_version, head, input, pending, result_count, "
    "created_at, updated_at"
)


_HEAD = (
    "version = ?, head = ?, pending = ?, result_count = result_count + ?, updated_at = ?, "
    "due_at = ? WHERE run_id = ? AND version = ?"
)
_RETURNING = " RETURNING workflow, definition_version, created_at, result_count, input"
_UPDATE_HEAD = "UPDATE runs SET " + _HEAD
_SAME_STATUS = " AND status = ?" + _RETURNING
_UPDATE_HEAD_AND_STATUS = "UPDATE runs SET status = ?, " + _HEAD + _RETURNING
"""A commit's head update: with the status unchanged, or setting it."""


def _pending_json(pending: Payload | None) -> str | None:
    return None if pending is None else pending.encode()


LOADED_INPUT_CACHE_MIN = 1024
"""Inputs shorter than this (in characters of JSON) are decoded at every load."""

LOADED_INPUTS_REMEMBERED = 256
"""Runs whose large decoded input a store keeps for loads (the most recently loaded)."""

COUNTS_REMEMBERED = 4096
"""Runs whose last committed node counts a store keeps in memory (the most recent)."""

NO_RESULTS: Mapping[str, int] = MappingProxyType({})
"""The node counts of a run with no results."""


class NodeCounts(Mapping[str, int]):
    """A history's node counts, in first-result order, that a commit extends in O(log n).

    Each commit's record carries its run's counts; copying a dict of every node the run
    has seen on every step made a step's cost grow with the history (a chain of 2,000
    distinct nodes spent 11 µs a step copying). This map is persistent: extending it
    shares everything with the counts it came from, which stay as they were. Iterating it
    (rare: a history's node ids) walks the order in which nodes first appeared.
    """

    __slots__ = ("_counts", "_order")

    def __init__(self, counts: immutables.Map[str, int], order: tuple[Any, ...] | None) -> None:
        self._counts = counts
        self._order = order
        """The node ids, newest first, as nested pairs ``(node_id, older)``."""

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> NodeCounts:
        if isinstance(counts, NodeCounts):
            return counts
        order: tuple[Any, ...] | None = None
        for node_id in counts:
            order = (node_id, order)
        return cls(immutables.Map(counts), order)

    def after(self, results: Sequence[AppendedResult]) -> NodeCounts:
        """These counts once ``results`` are appended (a node seen for the first time goes
        last)."""
        if not results:
            return self
        order = self._order
        counts = self._counts.mutate()
        for entry in results:
            if entry.node_id not in counts:
                order = (entry.node_id, order)
            counts[entry.node_id] = entry.node_index + 1
        return NodeCounts(counts.finish(), order)

    def __getitem__(self, node_id: str) -> int:
        return self._counts[node_id]

    def get(self, node_id: str, default: Any = None) -> Any:
        return self._counts.get(node_id, default)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._counts

    def __len__(self) -> int:
        return len(self._counts)

    def __iter__(self) -> Iterator[str]:
        newest_first: list[str] = []
        order = self._order
        while order is not None:
            newest_first.append(order[0])
            order = order[1]
        return reversed(newest_first)

    def __repr__(self) -> str:
        return f"NodeCounts({dict(self)!r})"


def _counts_after(
    counts: Mapping[str, int] | None, results: Sequence[AppendedResult]
) -> Mapping[str, int] | None:
    """:func:`~refluxo.runtime.ports.counts_after`, persistent (see :class:`NodeCounts`)."""
    if counts is None:
        return None
    return NodeCounts.of(counts).after(results)


def _record(
    row: tuple[Any, ...], decode_input: Callable[[str, str | None], Any] | None = None
) -> RunRecord:
    run_id, workflow, version, head, input_, pending, count, created, updated = row
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        definition_version=version,
        snapshot=decode_head(head),
        created_at=created,
        updated_at=updated,
        result_count=count,
        input=decode_input(run_id, input_) if decode_input else decode_json(input_),
        pending=Payload.decode(pending),
        node_counts=NO_RESULTS if count == 0 else None,
    )


class _Start(NamedTuple):
    """A run to create, with its first delivery (a write grouped like a commit)."""

    record: RunRecord
    first_delivery: Delivery | None


class _QueuedCommit:
    """A write waiting for the write lock (a step's commit or a run's start), and then its
    outcome."""

    __slots__ = ("commit", "done", "error", "recorded", "result")

    def __init__(self, commit: StepCommit | _Start) -> None:
        self.commit = commit
        self.done = False
        self.result: CommitResult | None = None
        self.recorded: Recorded | None = None
        self.error: BaseException | None = None


class SqliteHistory:
    """:class:`~refluxo.runtime.ports.HistoryReader` over the ``results`` table.

    ``counts``: the history's node counts, if known; counts and node ids are then answered
    without a query.
    """

    def __init__(
        self, db: SqliteDatabase, run_id: str, counts: Mapping[str, int] | None = None
    ) -> None:
        self._db = db
        self._run_id = run_id
        self._counts = counts

    def count(self, node_id: str) -> int:
        if self._counts is not None:
            return self._counts.get(node_id, 0)
        with self._db.reading() as connection:
            row = connection.execute(
                "SELECT max(node_index) FROM results WHERE run_id = ? AND node_id = ?",
                (self._run_id, node_id),
            ).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def get(self, node_id: str, index: int) -> NodeResult:
        with self._db.reading() as connection:
            row = connection.execute(
                "SELECT result FROM results WHERE run_id = ? AND node_id = ? AND node_index = ?",
                (self._run_id, node_id, index),
            ).fetchone()
        if row is None:
            raise IndexError(f"no result {index} for node {node_id!r}")
        return decode_result(row[0])

    def all(self, node_id: str) -> list[NodeResult]:
        with self._db.reading() as connection:
            rows = connection.execute(
                "SELECT result FROM results WHERE run_id = ? AND node_id = ? ORDER BY node_index",
                (self._run_id, node_id),
            ).fetchall()
        return [decode_result(row[0]) for row in rows]

    def node_ids(self) -> list[str]:
        if self._counts is not None:
            return list(self._counts)
        with self._db.reading() as connection:
            rows = connection.execute(
                "SELECT node_id FROM results WHERE run_id = ? GROUP BY node_id ORDER BY min(seq)",
                (self._run_id,),
            ).fetchall()
        return [row[0] for row in rows]


class SqliteStore:
    """Runs, results and definitions in one SQLite database."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        outbox: SqliteOutbox | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        if outbox is not None and outbox.path != str(db.path):
            raise ValueError("a SQLite store's outbox must belong to a scheduler on its own file")
        self.db = db
        self.outbox = outbox
        self._clock = clock
        self._queue: list[_QueuedCommit] = []
        self._counts: OrderedDict[str, tuple[int, Mapping[str, int]]] = OrderedDict()
        """By run: the node counts of the last head this store committed (its version),
        so that a run loaded again in this process (a delivery that went back to the
        queue) still numbers its results without a query."""
        self._inputs: dict[str, tuple[str | None, Any]] = {}
        """By run: its input as stored and decoded (read and written under the write
        lock), so that a commit returns the run's input without decoding it again."""
        self._stored_definitions: set[str] = set()
        """Definition versions this store has seen stored (a start reads none of them)."""
        self._queue_lock = threading.Lock()
        self._loaded_inputs: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._loaded_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def _load(self, connection: sqlite3.Connection, run_id: str) -> RunRecord | None:
        row = connection.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return _record(row, self._loaded_input) if row is not None else None

    def _loaded_input(self, run_id: str, text: str | None) -> Any:
        """The run's input, decoded once per run and text in this process: a parent's
        input (a map's items, often) is read again by every child's report."""
        if text is None or len(text) < LOADED_INPUT_CACHE_MIN:
            return decode_json(text)
        with self._loaded_lock:
            known = self._loaded_inputs.get(run_id)
            if known is not None and known[0] == text:
                self._loaded_inputs.move_to_end(run_id)
                return known[1]
        value = decode_json(text)
        with self._loaded_lock:
            self._loaded_inputs[run_id] = (text, value)
            if len(self._loaded_inputs) > LOADED_INPUTS_REMEMBERED:
                self._loaded_inputs.popitem(last=False)
        return value

    def create_run(self, record: RunRecord, first_delivery: Delivery | None = None) -> CommitResult:
        """Create the run, grouped with the commits and starts other threads submit
        meanwhile (see :meth:`commit`)."""
        return self._grouped(_Start(record, first_delivery))

    def _create_one(
        self, connection: sqlite3.Connection, start: _Start
    ) -> tuple[CommitResult, Recorded | None]:
        record, first_delivery = start
        snapshot = record.snapshot
        added = connection.execute(
            "INSERT INTO runs (run_id, workflow, definition_version, status, version, head, "
            "input, pending, result_count, created_at, updated_at, due_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
            (
                record.run_id,
                record.workflow,
                record.definition_version,
                snapshot.status.value,
                snapshot.version,
                encode_head(snapshot),
                encode_json(record.input),
                _pending_json(record.pending),
                record.created_at,
                record.updated_at,
                expected_at(snapshot, record.updated_at),
            ),
        ).rowcount
        if not added:
            stored = self._load(connection, record.run_id)
            return CommitResult(committed=False, record=stored), None
        recorded = None
        if self.outbox is not None:
            recorded = self.outbox.record(
                connection, first_delivery, None, record.created_at, record
            )
        result = CommitResult(committed=True, scheduled=self.outbox is not None, record=record)
        return result, recorded

    def load_run(self, run_id: str) -> RunRecord | None:
        with self.db.reading() as connection:
            record = self._load(connection, run_id)
        if record is None or record.node_counts is not None:
            return record
        with self._queue_lock:
            known = self._counts.get(run_id)
        if known is None or known[0] != record.version:
            return record  # another writer's head, or one committed before these counts
        return dataclasses.replace(record, node_counts=known[1])

    def commit(self, commit: StepCommit) -> CommitResult:
        """Commit, grouped with the commits and starts other threads submit meanwhile.

        Group commit: a commit waits for the write lock; whoever gets it applies every
        commit queued so far in one transaction (one fsync for all of them), each still
        checked against its own expected version. A caller whose commit was applied by
        another thread just collects its result.
        """
        return self._grouped(commit)

    def _grouped(self, commit: StepCommit | _Start) -> CommitResult:
        entry = _QueuedCommit(commit)
        with self._queue_lock:
            self._queue.append(entry)
        with self._write_lock:
            if not entry.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._apply(batch)
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    def _apply(self, batch: list[_QueuedCommit]) -> None:
        now = self._clock()
        recorded: list[Recorded] = []
        try:
            with self.db.write() as connection:
                if len(batch) == 1:
                    # Alone in its transaction (no savepoint): a commit that cannot be
                    # written (a value out of SQLite's range) rolls it back, and fails alone.
                    only = batch[0]
                    only.result, only.recorded = self._write(connection, only.commit, now)
                else:
                    for entry in batch:
                        self._apply_saved(connection, entry, now)
        except (sqlite3.DatabaseError, ValueError, OverflowError, TypeError) as err:
            if len(batch) != 1:
                self._fail(batch, err)
                raise
            batch[0].result = None
            batch[0].error = err  # not transient (those leave as TransientError)
        except BaseException as err:
            self._fail(batch, err)
            raise
        committed: list[RunRecord] = []
        for entry in batch:
            entry.done = True
            if entry.error is None:
                if entry.result is not None and entry.result.record is not None:
                    committed.append(entry.result.record)
                if entry.recorded is not None:
                    recorded.append(entry.recorded)
        self._remember_counts(committed)
        if self.outbox is not None:
            self.outbox.committed(recorded)

    def _remember_counts(self, records: list[RunRecord]) -> None:
        """Keep the node counts commits returned, for a later load of the same heads."""
        counts = self._counts
        with self._queue_lock:
            for record in records:
                if record.node_counts is not None:
                    counts[record.run_id] = (record.version, record.node_counts)
                    counts.move_to_end(record.run_id)
            while len(counts) > COUNTS_REMEMBERED:
                counts.popitem(last=False)

    @staticmethod
    def _fail(batch: list[_QueuedCommit], error: BaseException) -> None:
        for entry in batch:
            entry.result = None
            entry.error = error
            entry.done = True

    def _apply_saved(self, connection: sqlite3.Connection, entry: _QueuedCommit, now: int) -> None:
        """One commit of a group, in its own savepoint: one that cannot be written (a value
        out of SQLite's range, an input that is not JSON) fails alone, not the commits
        grouped with it."""
        connection.execute("SAVEPOINT one_commit")
        try:
            entry.result, entry.recorded = self._write(connection, entry.commit, now)
        except (sqlite3.DatabaseError, ValueError, OverflowError, TypeError) as err:
            connection.execute("ROLLBACK TO one_commit")
            connection.execute("RELEASE one_commit")
            if isinstance(err, sqlite3.DatabaseError) and is_transient(err):
                raise
            entry.error = err
            return
        connection.execute("RELEASE one_commit")

    def _write(
        self, connection: sqlite3.Connection, commit: StepCommit | _Start, now: int
    ) -> tuple[CommitResult, Recorded | None]:
        if isinstance(commit, _Start):
            return self._create_one(connection, commit)
        return self._apply_one(connection, commit, now)

    def _apply_one(
        self, connection: sqlite3.Connection, commit: StepCommit, now: int
    ) -> tuple[CommitResult, Recorded | None]:
        snapshot = commit.snapshot
        status = snapshot.status.value
        values = (
            snapshot.version,
            encode_head(snapshot),
            _pending_json(commit.pending),
            len(commit.results),
            now,
            expected_at(snapshot, now),
            commit.run_id,
            commit.expected_version,
        )
        # Most steps keep the run's status: leaving the column out of the SET spares the
        # status index a rewrite (a page of every commit). A step that changes it (a pause,
        # the end) finds no row that way and sets it.
        row = connection.execute(_UPDATE_HEAD + _SAME_STATUS, (*values, status)).fetchone()
        if row is None:
            row = connection.execute(_UPDATE_HEAD_AND_STATUS, (status, *values)).fetchone()
        if row is None:
            return CommitResult(committed=False), None
        workflow, definition_version, created_at, result_count, input_ = row
        self._append(connection, commit.run_id, commit.results)
        # The run's input never changes: decoded once per run in this process, not per step.
        known = self._inputs.get(commit.run_id)
        if known is not None and known[0] == input_:
            value = known[1]
        else:
            value = decode_json(input_)
            if len(self._inputs) >= COUNTS_REMEMBERED:
                self._inputs.clear()
            self._inputs[commit.run_id] = (input_, value)
        record = RunRecord(
            run_id=commit.run_id,
            workflow=workflow,
            definition_version=definition_version,
            snapshot=snapshot,
            created_at=created_at,
            updated_at=now,
            result_count=result_count,
            input=value,
            pending=commit.pending,
            node_counts=_counts_after(commit.expected_counts, commit.results),
        )
        recorded = None
        if self.outbox is not None:
            recorded = self.outbox.record(
                connection, commit.next_delivery, commit.delivery, now, record
            )
        result = CommitResult(committed=True, scheduled=self.outbox is not None, record=record)
        return result, recorded

    @staticmethod
    def _append(
        connection: sqlite3.Connection, run_id: str, results: Sequence[AppendedResult]
    ) -> None:
        connection.executemany(
            "INSERT INTO results (run_id, seq, node_id, node_index, result) VALUES (?, ?, ?, ?, ?)",
            [(run_id, e.seq, e.node_id, e.node_index, encode_result(e.result)) for e in results],
        )

    def history(self, record: RunRecord) -> SqliteHistory:
        return SqliteHistory(self.db, record.run_id, record.node_counts)

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        rows = timeline_rows(self.db, run_id, after_seq, limit)
        return [TimelineEntry(seq, node_id, decode_result(result)) for seq, node_id, result in rows]

    def list_runs(
        self, *, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if cursor is not None:
            created, run_id = decode_cursor(cursor)
            clauses.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            params.extend([created, created, run_id])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.db.reading() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs {where} "
                "ORDER BY created_at DESC, run_id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        runs = [_record(row) for row in rows[:limit]]
        next_cursor = (
            encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(rows) > limit else None
        )
        return RunPage(runs=runs, next_cursor=next_cursor)

    def overdue_runs(
        self, expected_before: int, *, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs expected at or before ``expected_before``, by ``(due_at, run_id)``: one range
        of the ``runs_by_due_time`` index, exact (``due_at`` is written with every head)."""
        clauses = ["due_at <= ?"]
        params: list[Any] = [expected_before]
        if cursor is not None:
            due_at, run_id = decode_cursor(cursor)
            clauses.append("(due_at, run_id) > (?, ?)")  # a row value: one index range
            params.extend([due_at, run_id])
        with self.db.reading() as connection:
            rows = connection.execute(
                f"SELECT {_RUN_COLUMNS}, due_at FROM runs WHERE {' AND '.join(clauses)} "
                "ORDER BY due_at, run_id LIMIT ?",
                (*params, max(limit, 0) + 1),
            ).fetchall()
        page = rows[: max(limit, 0)]
        runs = [_record(row[:-1]) for row in page]
        next_cursor = None
        if page and len(rows) > len(page):
            next_cursor = encode_cursor(page[-1][-1], page[-1][0])
        return RunPage(runs=runs, next_cursor=next_cursor)

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        if version in self._stored_definitions:
            return  # content-addressed and never deleted: stored once is stored for good
        with self.db.reading() as connection:
            exists = connection.execute(
                "SELECT 1 FROM definitions WHERE version = ?", (version,)
            ).fetchone()
        if exists is None:
            with self.db.write() as tx:
                tx.execute(
                    "INSERT OR IGNORE INTO definitions (version, workflow, body, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (version, workflow, encode_json(definition), self._clock()),
                )
        self._stored_definitions.add(version)

    def get_definition(self, version: str) -> dict[str, Any] | None:
        with self.db.reading() as connection:
            row = connection.execute(
                "SELECT body FROM definitions WHERE version = ?", (version,)
            ).fetchone()
        if row is None:
            return None
        loaded: dict[str, Any] = decode_json(row[0])
        return loaded

    # -- joining child runs ----------------------------------------------------------------

    def record_child_end(self, parent_id: str, version: int, end: ChildEnd) -> JoinCount:
        """One write transaction: the end inserted if new, the wait's counts bumped only
        then. SQLite serialises writers anyway, so one counter row per wait costs no
        contention here (Firestore shards it)."""
        output = encode_json(end.output) if not end.failed else None
        with self.db.write() as tx:
            added = tx.execute(
                "INSERT INTO child_ends "
                "(parent_id, version, idx, run_id, status, output, error, descendants) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    parent_id,
                    version,
                    end.index,
                    end.run_id,
                    end.status,
                    output,
                    end.error,
                    end.descendants,
                ),
            ).rowcount
            if added:
                tx.execute(
                    "INSERT INTO join_counts (parent_id, version, ended, failed) "
                    "VALUES (?, ?, 1, ?) ON CONFLICT (parent_id, version) DO UPDATE SET "
                    "ended = ended + 1, failed = failed + excluded.failed",
                    (parent_id, version, int(end.failed)),
                )
            row = tx.execute(
                "SELECT ended, failed FROM join_counts WHERE parent_id = ? AND version = ?",
                (parent_id, version),
            ).fetchone()
        return JoinCount(int(row[0]), int(row[1]))

    def child_ends(
        self, parent_id: str, version: int, *, after_index: int = -1, limit: int = 1000
    ) -> list[ChildEnd]:
        with self.db.reading() as connection:
            rows = connection.execute(
                "SELECT idx, run_id, status, output, error, descendants FROM child_ends "
                "WHERE parent_id = ? AND version = ? AND idx > ? ORDER BY idx LIMIT ?",
                (parent_id, version, after_index, limit),
            ).fetchall()
        return [
            ChildEnd(index, run_id, status, decode_json(output), error, descendants)
            for index, run_id, status, output, error, descendants in rows
        ]

    def put_child_inputs(
        self, parent_id: str, version: int, digest: str, inputs: Sequence[Any]
    ) -> None:
        rows = [
            (parent_id, version, digest, index, encode_json(value))
            for index, value in enumerate(inputs)
        ]
        with self.db.write() as tx:
            tx.executemany(
                "INSERT INTO child_inputs (parent_id, version, digest, idx, input) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    def child_input(self, parent_id: str, version: int, digest: str, index: int) -> Any:
        with self.db.reading() as connection:
            row = connection.execute(
                "SELECT input FROM child_inputs "
                "WHERE parent_id = ? AND version = ? AND digest = ? AND idx = ?",
                (parent_id, version, digest, index),
            ).fetchone()
        if row is None:
            raise LookupError(f"no input {index} kept for run {parent_id!r} at version {version}")
        return decode_json(row[0])
