"""The :class:`~refluxo.runtime.protocols.SnapshotStore` on Google Cloud Firestore.

Layout (``P`` is the constructor's ``prefix``, default ``refluxo``)::

    P_runs/{runId}                     the run's head
        workflow, definitionVersion, status, version, createdAt, updatedAt, resultCount
                                       top-level, queryable
        head                           the snapshot without its context (wire JSON string)
        input                          the run's input (JSON string)
        pending                        '{"value": ...}' (JSON string) or null
        nodeCounts                     '[[nodeId, count], ...]' (JSON string): every node
                                       with results, in first-result order
        recentCommits                  tokens of the last few commits (see "exactly once")
    P_runs/{runId}/results/{seq:012d}  one document per committed result
        seq, nodeId, nodeIndex, result (NodeResult JSON string)
    P_definitions/{version}            workflow, body (JSON string), createdAt

User data is kept as JSON strings because Firestore forbids nested arrays, which user JSON
may contain; the strings round-trip exactly as in the SQLite store.

Why this shape:

* A step reads one document and writes two. The dispatcher's ``load_run`` reads the head,
  which carries the run's per-node result counts (``RunRecord.node_counts``), so numbering
  a step's result needs no read; the commit then writes the head and one document per
  appended result (a step usually appends one: two writes), in one batch guarded by the
  head's update time from that read (see "exactly once"), so it reads nothing either.
* The head grows with the number of *distinct* nodes the run has executed, never with its
  history: ``nodeCounts`` holds one ``[id, count]`` pair per node (the id's length plus
  about ten bytes), bounded by the workflow's size (``RuntimeLimits.max_nodes``, 2,000 by
  default: 2,000 ids of 32 characters are about 85 kB). A run that loops a node a million
  times only changes that node's count. The counts are one JSON string rather than a
  Firestore map on purpose: the Python client decodes (and copies) a map value by value,
  so reading a head with 2,000 entries cost ~50 ms on the emulator against ~4 ms for the
  string, while rewriting the whole string on each commit cost about what a field-path
  update of one map entry does (~4.6 ms either way at 2,000 nodes; writing a whole map
  cost twice as much). And a string is one index entry, where a map is one per value.
* Every document stays below Firestore's 1 MiB limit however long the run: each result
  has its own document, and a result, or a head (snapshot, input, pending payload and node
  counts together), larger than :data:`MAX_VALUE_BYTES` is refused with
  :class:`~refluxo.errors.LimitExceededError` before anything is written, instead of an
  opaque ``InvalidArgument`` from the service. (The dispatcher fails such a run with the
  reason; its failing commit appends nothing, so it fits.)
* Reads stay O(1) per step however long the history: ``count`` and ``node_ids`` read the
  head's ``nodeCounts`` (projected: only that field is sent), ``get`` is a query on
  ``nodeId == X and nodeIndex == i`` (equalities on two fields are served by merging the
  automatic single-field indexes), the timeline orders by ``seq`` (single field).
* No composite index is needed except for listing runs by status:
  ``P_runs (status ASC, createdAt DESC)`` (``__name__ DESC`` implied). Nothing queries
  ``head``, ``input``, ``pending``, ``nodeCounts``, ``recentCommits``, ``updatedAt``
  (runs), ``result`` (results) or ``body`` (definitions): exempt them from single-field
  indexing. That saves index writes and, for ``updatedAt``, avoids the hotspot of an
  ever-increasing indexed value written by every commit of every run (Firestore advises
  under 500 such writes per second).

Exactly once: a commit is applied only if the head is the one the commit was computed
from, in one of two ways.

* With ``StepCommit.expected_revision`` (the dispatcher passes the revision of the head it
  loaded): one batched write, no read. The head update carries the precondition
  ``last_update_time`` = the update time ``load_run`` saw, and Firestore changes a
  document's update time on every write, so the batch (head and results, atomically) is
  refused if anything changed the head since: another commit, a resume, a cancel. A
  refusal is a lost race (``committed=False``). Results are *created*, so a duplicate
  ``seq`` can never overwrite one. The next head (result count, node counts, tokens,
  size check) is computed from the fields as read, which the precondition proves current.
* Without it (resume, cancel, or a caller holding no revision): one transaction reads the
  head, checks ``version``, and writes head and results. Contention (``Aborted``) is
  retried by the client (which keeps the transaction's place in line), then by this store.

Transient failures (``Aborted``, ``DeadlineExceeded``, ``ServiceUnavailable``,
``InternalServerError``) are retried with a short backoff; after
:attr:`FirestoreStore.max_attempts` attempts a :class:`~refluxo.runtime.errors.StoreError`
is raised, never a conflict. An error on the commit call itself is ambiguous (the write
may have been applied): every commit carries a random token kept in the head's
``recentCommits`` (the last eight). A retried transaction that finds its token reports the
commit as applied rather than as a lost race. A batch is never re-sent blindly (the
client's own retry of ``Commit`` is turned off, since a re-sent batch would be refused by
the precondition its first copy satisfied): the store reads the head once and decides
from it: token present, applied (``committed=True``); head unchanged, not applied, so send
again within bounds; head changed without the token, a lost race. A refusal that follows
an ambiguous attempt is checked against the token the same way, since the first copy may
have landed late. The store cannot record deliveries in the same write, so
``StepCommit.outbox`` and ``acknowledge`` are ignored and every commit returns
``scheduled=False``: the dispatcher schedules after the commit.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from refluxo.engine import Clock, wall_clock_ms
from refluxo.errors import LimitExceededError
from refluxo.model import NodeResult, Snapshot, SnapshotStatus
from refluxo.runtime.cursor import decode_cursor, encode_cursor
from refluxo.runtime.errors import StoreError
from refluxo.runtime.protocols import (
    AppendedResult,
    CommitResult,
    Delivery,
    Payload,
    RunPage,
    RunRecord,
    StepCommit,
    TimelineEntry,
)

T = TypeVar("T")

MAX_VALUE_BYTES = 900_000
"""Largest serialised result, head (snapshot + input + pending + node counts) or definition.

Firestore refuses documents over 1 MiB (1,048,576 bytes, names and other fields included);
this leaves room for the rest of the document.
"""

MAX_COMMIT_BYTES = 9_000_000
"""Largest total payload of one commit's head and results (Firestore refuses requests over
10 MiB; the head's node counts, at most :data:`MAX_VALUE_BYTES`, still fit beside it)."""

MAX_COMMIT_WRITES = 500
"""Most documents one commit may write (Firestore's limit per transaction)."""

RECENT_COMMITS = 8
"""How many commit tokens the head remembers, to recognise an ambiguous commit as applied."""

NODE_COUNTS = "nodeCounts"
"""The head field holding ``[[nodeId, count], ...]`` (JSON), in first-result order."""

REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    google_exceptions.FailedPrecondition,
    google_exceptions.AlreadyExists,
    google_exceptions.NotFound,
)
"""How Firestore refuses a guarded batch without applying any of it: the head changed
since it was read (or vanished), or a result document exists already."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    google_exceptions.Aborted,
    google_exceptions.DeadlineExceeded,
    google_exceptions.ServiceUnavailable,
    google_exceptions.InternalServerError,
)
"""Failures worth retrying: contention, timeouts and the service being briefly unavailable."""


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _size(text: str | None) -> int:
    return 0 if text is None else len(text.encode())


def _pending_json(pending: Payload | None) -> str | None:
    return None if pending is None else pending.encode()


@dataclass(frozen=True, slots=True)
class HeadRevision:
    """A run's head exactly as it was read: what ``RunRecord.revision`` holds here.

    ``update_time`` is the head document's update time, which Firestore changes on every
    write to the document: a write guarded by ``last_update_time=update_time`` applies only
    if nothing touched the head since this read. ``data`` is the head's fields as read, so
    that a commit against this revision computes the next head (result count, node counts,
    commit tokens, size) without reading it again; the guard proves them current.
    Revisions compare by ``update_time`` only.
    """

    update_time: Any
    data: dict[str, Any] = field(compare=False, repr=False)


def _node_counts(data: Mapping[str, Any]) -> dict[str, int] | None:
    """The head's per-node result counts in first-result order; None for a head without."""
    text = data.get(NODE_COUNTS)
    if text is None:
        return None
    return {str(node_id): int(count) for node_id, count in json.loads(text)}


def _require_counts(run_id: str, data: Mapping[str, Any]) -> dict[str, int]:
    counts = _node_counts(data)
    if counts is None:
        # Heads written before the counts moved into the head kept them in per-node
        # counter documents, which nothing reads or writes any more.
        raise StoreError(
            f"run {run_id!r} has no {NODE_COUNTS} in its head: it was written by an older "
            f"layout of the Firestore store (per-node counter documents); finish or migrate "
            f"such runs with the version that wrote them"
        )
    return counts


def _record(run_id: str, data: dict[str, Any], update_time: Any = None) -> RunRecord:
    """The record of a head read from Firestore; with its update time, a revision too."""
    pending = data.get("pending")
    input_ = data.get("input")
    return RunRecord(
        run_id=run_id,
        workflow=data["workflow"],
        definition_version=data["definitionVersion"],
        snapshot=Snapshot.model_validate_json(data["head"]),
        created_at=int(data["createdAt"]),
        updated_at=int(data["updatedAt"]),
        result_count=int(data["resultCount"]),
        input=json.loads(input_) if input_ is not None else None,
        pending=Payload.decode(pending),
        node_counts=_node_counts(data),
        revision=HeadRevision(update_time, data) if update_time is not None else None,
    )


def _is_transient(error: BaseException) -> bool:
    """True if ``error`` or an error it was raised from or while handling is transient.

    The client wraps exhausted contention retries in a ``ValueError`` raised *from* the last
    ``Aborted``, and a failed rollback is raised *while handling* the original failure, so
    the whole chain is examined.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, TRANSIENT_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _Retry:
    """Runs an operation, retrying transient failures a bounded number of times."""

    def __init__(
        self, max_attempts: int, backoff_ms: float, sleep: Callable[[float], None]
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.backoff_ms = backoff_ms
        self.sleep = sleep

    def backoff(self, attempt: int) -> None:
        """Wait before attempt number ``attempt`` (0-based; the first one does not wait)."""
        if attempt:
            delay_ms = min(1_000.0, self.backoff_ms * 2 ** (attempt - 1))
            self.sleep(delay_ms * random.uniform(0.5, 1.0) / 1000)

    def run(self, operation: str, action: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            self.backoff(attempt)
            try:
                return action()
            except Exception as err:
                if not _is_transient(err):
                    raise
                last = err
        raise self.exhausted(operation, last) from last

    def exhausted(self, operation: str, last: BaseException | None) -> StoreError:
        return StoreError(
            f"Firestore {operation} failed after {self.max_attempts} attempts "
            f"(contention or unavailability): {last}"
        )


class FirestoreHistory:
    """:class:`~refluxo.runtime.protocols.HistoryReader` over a run's head and results.

    Counts and node ids come from the head's ``nodeCounts`` (one read of that field only,
    fresh on every call); results from the ``results`` subcollection.
    """

    def __init__(self, run: firestore.DocumentReference, retry: _Retry) -> None:
        self._run = run
        self._results = run.collection("results")
        self._retry = retry

    def _counts(self) -> dict[str, int]:
        found = self._retry.run("history counts", lambda: self._run.get(field_paths=[NODE_COUNTS]))
        if not found.exists:
            return {}
        return _require_counts(self._run.id, _data(found))

    def count(self, node_id: str) -> int:
        return self._counts().get(node_id, 0)

    def get(self, node_id: str, index: int) -> NodeResult:
        query = (
            self._results.where(filter=FieldFilter("nodeId", "==", node_id))
            .where(filter=FieldFilter("nodeIndex", "==", index))
            .limit(1)
        )
        docs = self._retry.run("history get", lambda: list(query.stream()))
        if not docs:
            raise IndexError(f"no result {index} for node {node_id!r}")
        return NodeResult.model_validate_json(_data(docs[0])["result"])

    def all(self, node_id: str) -> list[NodeResult]:
        # Equality only (no order_by): no composite index. Sorted here by nodeIndex.
        query = self._results.where(filter=FieldFilter("nodeId", "==", node_id))
        docs = self._retry.run("history all", lambda: [_data(d) for d in query.stream()])
        docs.sort(key=lambda data: int(data["nodeIndex"]))
        return [NodeResult.model_validate_json(data["result"]) for data in docs]

    def node_ids(self) -> list[str]:
        return list(self._counts())


def _data(snapshot: Any) -> dict[str, Any]:
    data = snapshot.to_dict()
    if data is None:
        raise StoreError(f"Firestore document {snapshot.reference.path} vanished while read")
    return cast(dict[str, Any], data)


class FirestoreStore:
    """Runs, results and definitions in Firestore; see the module docstring for the layout.

    Args:
        client: A ``google.cloud.firestore.Client`` (thread-safe; share one per process).
        prefix: Prefix of the top-level collection names, so several deployments (or
            tests) share a database without seeing each other.
        clock: Epoch milliseconds, for ``updatedAt`` and definitions' ``createdAt``.
        max_attempts: Attempts per operation on transient failures, and the client's
            attempts per transaction on contention, before :class:`StoreError`.
        backoff_ms: First delay between this store's attempts; doubled each time, capped
            at one second, with jitter.
    """

    def __init__(
        self,
        client: firestore.Client,
        *,
        prefix: str = "refluxo",
        clock: Clock = wall_clock_ms,
        max_attempts: int = 5,
        backoff_ms: float = 50.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_attempts = max_attempts
        self._clock = clock
        self._retry = _Retry(max_attempts, backoff_ms, sleep)
        self._runs = client.collection(f"{prefix}_runs")
        self._definitions = client.collection(f"{prefix}_definitions")

    # -- transactions -------------------------------------------------------------------

    def _transact(self, operation: str, body: Callable[[Any], T]) -> T:
        """Run ``body(transaction)`` in a Firestore transaction, retried within bounds.

        ``body`` may run several times; it must only read through the transaction and
        write to it, and return its outcome.
        """

        def attempt() -> T:
            transaction = self.client.transaction(max_attempts=self.max_attempts)
            transactional = firestore.transactional(body)
            return cast(T, transactional(transaction))

        return self._retry.run(operation, attempt)

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, record: RunRecord, outbox: Sequence[Delivery] = ()) -> CommitResult:
        """Create the run; ``outbox`` is not recorded (``scheduled=False``)."""
        token = uuid.uuid4().hex
        snapshot = record.snapshot
        head = snapshot.model_dump_json()
        input_ = _dump(record.input)
        pending = _pending_json(record.pending)
        _check_head(record.run_id, head, input_, pending, "[]", 0)
        fields = {
            "workflow": record.workflow,
            "definitionVersion": record.definition_version,
            "status": snapshot.status.value,
            "version": snapshot.version,
            "createdAt": record.created_at,
            "updatedAt": record.updated_at,
            "resultCount": 0,
            "head": head,
            "input": input_,
            "pending": pending,
            NODE_COUNTS: "[]",
            "recentCommits": [token],
        }
        ref = self._runs.document(record.run_id)

        def body(transaction: Any) -> CommitResult:
            found = ref.get(transaction=transaction)
            if found.exists:
                data = _data(found)
                mine = token in data.get("recentCommits", ())
                stored = _record(record.run_id, data, found.update_time)
                return CommitResult(committed=mine, record=stored)
            transaction.create(ref, fields)
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("create_run", body)

    def load_run(self, run_id: str) -> RunRecord | None:
        """The head, with its node counts and its revision (one document read)."""
        found = self._retry.run("load_run", self._runs.document(run_id).get)
        data = found.to_dict()
        return None if data is None else _record(run_id, data, found.update_time)

    def commit(self, commit: StepCommit) -> CommitResult:
        """Write head and results atomically if the head is still the expected one.

        With ``commit.expected_revision`` (a :class:`HeadRevision` from this store): one
        batch guarded by the head's update time, no read. Without: one transaction that
        reads the head and checks its version. See the module docstring.
        """
        prepared = _Prepared.of(self._runs.document(commit.run_id), commit, self._clock())
        if commit.expected_revision is None:
            return self._commit_in_transaction(prepared)
        revision = commit.expected_revision
        if not isinstance(revision, HeadRevision):
            raise TypeError(
                f"expected_revision must be a HeadRevision from FirestoreStore.load_run, "
                f"not {type(revision).__name__}"
            )
        return self._commit_at_revision(prepared, revision)

    def _commit_in_transaction(self, prepared: _Prepared) -> CommitResult:
        commit, run = prepared.commit, prepared.run

        def body(transaction: Any) -> CommitResult:
            found = run.get(transaction=transaction)
            if not found.exists:
                return CommitResult(committed=False)
            data = _data(found)
            if data["version"] != commit.expected_version:
                # Our own earlier attempt may have been applied though its reply was lost.
                mine = prepared.token in data.get("recentCommits", ())
                return CommitResult(committed=mine, record=_record(run.id, data, found.update_time))
            fields, record = prepared.next_head(data)
            transaction.update(run, fields)
            for ref, document in prepared.results:
                transaction.create(ref, document)
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("commit", body)

    def _commit_at_revision(self, prepared: _Prepared, revision: HeadRevision) -> CommitResult:
        """One guarded batch; an ambiguous failure is settled by one read of the head."""
        if revision.data["version"] != prepared.commit.expected_version:
            return CommitResult(committed=False)  # cannot match: nothing to send
        fields, record = prepared.next_head(revision.data)
        guard = self.client.write_option(last_update_time=revision.update_time)
        ambiguous = False
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            self._retry.backoff(attempt)
            batch = self.client.batch()
            batch.update(prepared.run, fields, option=guard)
            for ref, document in prepared.results:
                batch.create(ref, document)
            try:
                # retry=None: the client's own retry of Commit would re-send a batch whose
                # first copy may have landed, and report the copy's refusal as a lost race.
                written = batch.commit(retry=None)
            except REFUSED_ERRORS:
                if not ambiguous:
                    return CommitResult(committed=False)
                # An earlier copy, whose reply was lost, may have landed after the check.
                return self._settle(prepared, revision)[0]
            except Exception as err:
                if not _is_transient(err):
                    raise
                ambiguous, last = True, err
                outcome, unchanged = self._settle(prepared, revision)
                if not unchanged:
                    return outcome
                continue  # not applied, and the guard still holds: send it again
            data = {**revision.data, **fields}
            applied = RunRecord(
                **{**_fields(record), "revision": HeadRevision(written[0].update_time, data)}
            )
            return CommitResult(committed=True, scheduled=False, record=applied)
        raise self._retry.exhausted("commit", last) from last

    def _settle(self, prepared: _Prepared, revision: HeadRevision) -> tuple[CommitResult, bool]:
        """Was an ambiguous attempt applied? One read of the head decides.

        Returns the outcome (committed if the head holds the commit's token, else a lost
        race) and whether the head is still ``revision``: then nothing was applied, and
        sending the batch again is safe.
        """
        found = self._retry.run("commit check", prepared.run.get)
        if not found.exists:
            return CommitResult(committed=False), False
        data = _data(found)
        record = _record(prepared.run.id, data, found.update_time)
        if prepared.token in data.get("recentCommits", ()):
            return CommitResult(committed=True, scheduled=False, record=record), False
        return CommitResult(
            committed=False, record=record
        ), found.update_time == revision.update_time

    def history(self, run_id: str) -> FirestoreHistory:
        return FirestoreHistory(self._runs.document(run_id), self._retry)

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        query = (
            self._runs.document(run_id)
            .collection("results")
            .where(filter=FieldFilter("seq", ">", after_seq))
            .order_by("seq")
            .limit(limit)
        )
        docs = self._retry.run("timeline", lambda: [_data(d) for d in query.stream()])
        return [
            TimelineEntry(
                int(data["seq"]), data["nodeId"], NodeResult.model_validate_json(data["result"])
            )
            for data in docs
        ]

    def list_runs(
        self, *, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs newest ``createdAt`` first (ties by id, descending), like the SQLite store."""
        query: Any = self._runs
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status.value))
        query = query.order_by("createdAt", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if cursor is not None:
            created_at, run_id = decode_cursor(cursor)
            query = query.start_after({"createdAt": created_at, "__name__": run_id})
        query = query.limit(limit + 1)
        docs = self._retry.run("list_runs", lambda: list(query.stream()))
        runs = [_record(doc.id, _data(doc), doc.update_time) for doc in docs[:limit]]
        next_cursor = (
            encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(docs) > limit else None
        )
        return RunPage(runs=runs, next_cursor=next_cursor)

    # -- definitions ------------------------------------------------------------------------

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        """Store the definition unless ``version`` exists already (the first one stays)."""
        body = _dump(definition)
        if _size(body) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"definition {version} of workflow {workflow!r} is {_size(body)} bytes; "
                f"the Firestore store keeps definitions of up to {MAX_VALUE_BYTES} bytes"
            )
        ref = self._definitions.document(version)
        fields = {"workflow": workflow, "body": body, "createdAt": self._clock()}

        def create() -> None:
            # Content-addressed: an existing document holds the same definition.
            with contextlib.suppress(google_exceptions.AlreadyExists):
                ref.create(fields)

        self._retry.run("put_definition", create)

    def get_definition(self, version: str) -> dict[str, Any] | None:
        found = self._retry.run("get_definition", self._definitions.document(version).get)
        data = found.to_dict()
        if data is None:
            return None
        return cast(dict[str, Any], json.loads(data["body"]))


# -- commit preparation -------------------------------------------------------------------

Document = tuple[firestore.DocumentReference, dict[str, Any]]


def _fields(record: RunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RunRecord.__slots__}


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A commit serialised and checked once, before any attempt: what every attempt sends.

    ``token`` is the same for every attempt, so a later attempt recognises an earlier one
    that was applied though its reply was lost.
    """

    commit: StepCommit
    run: firestore.DocumentReference
    token: str
    now: int
    head: str
    pending: str | None
    results: list[Document]

    @classmethod
    def of(cls, run: firestore.DocumentReference, commit: StepCommit, now: int) -> _Prepared:
        head = commit.snapshot.model_dump_json()
        pending = _pending_json(commit.pending)
        results = _result_documents(run, commit.results)
        _check_commit(commit.run_id, head, pending, results)
        return cls(commit, run, uuid.uuid4().hex, now, head, pending, results)

    def next_head(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], RunRecord]:
        """The head fields to write over the head ``data``, and the record they make.

        Raises :class:`LimitExceededError` if the new head would not fit in a document.
        """
        commit = self.commit
        counts = _require_counts(commit.run_id, data)
        fields: dict[str, Any] = {
            "status": commit.snapshot.status.value,
            "version": commit.snapshot.version,
            "head": self.head,
            "pending": self.pending,
            "resultCount": int(data["resultCount"]) + len(commit.results),
            "updatedAt": self.now,
            "recentCommits": [*data.get("recentCommits", ()), self.token][-RECENT_COMMITS:],
        }
        nodes = data[NODE_COUNTS]
        if commit.results:
            counts = _counted(counts, commit.results)
            nodes = fields[NODE_COUNTS] = _dump([[node_id, n] for node_id, n in counts.items()])
        input_ = data.get("input")
        _check_head(commit.run_id, self.head, input_, self.pending, nodes, len(counts))
        record = RunRecord(
            run_id=commit.run_id,
            workflow=data["workflow"],
            definition_version=data["definitionVersion"],
            snapshot=commit.snapshot,
            created_at=int(data["createdAt"]),
            updated_at=self.now,
            result_count=fields["resultCount"],
            input=json.loads(input_) if input_ is not None else None,
            pending=commit.pending,
            node_counts=counts,
        )
        return fields, record


def _counted(counts: Mapping[str, int], results: Sequence[AppendedResult]) -> dict[str, int]:
    """``counts`` after ``results``: a node's count is one past its highest index.

    New nodes are added in ``seq`` order, which keeps the mapping in first-result order.
    """
    after = dict(counts)
    for entry in sorted(results, key=lambda e: e.seq):
        after[entry.node_id] = max(after.get(entry.node_id, 0), entry.node_index + 1)
    return after


def _result_documents(
    run: firestore.DocumentReference, results: Sequence[AppendedResult]
) -> list[Document]:
    documents: list[Document] = []
    collection = run.collection("results")
    for entry in results:
        text = entry.result.model_dump_json()
        if _size(text) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"the result of node {entry.node_id!r} is {_size(text)} bytes once serialised; "
                f"a Firestore document holds at most 1 MiB, so results are limited to "
                f"{MAX_VALUE_BYTES} bytes"
            )
        fields = {
            "seq": entry.seq,
            "nodeId": entry.node_id,
            "nodeIndex": entry.node_index,
            "result": text,
        }
        documents.append((collection.document(f"{entry.seq:012d}"), fields))
    return documents


def _check_head(
    run_id: str, head: str, input_: str | None, pending: str | None, nodes: str, distinct: int
) -> None:
    """Refuse a head that would not fit in a document, saying what it is made of.

    ``nodes`` (the node counts) grows with the distinct nodes a run executed, so a head
    that fitted when the run started may outgrow the limit later: checked on every commit.
    """
    size = _size(head) + _size(input_) + _size(pending) + _size(nodes)
    if size > MAX_VALUE_BYTES:
        raise LimitExceededError(
            f"the head of run {run_id!r} would be {size} bytes: snapshot {_size(head)}, "
            f"input {_size(input_)}, pending payload {_size(pending)}, result counts of its "
            f"{distinct} distinct nodes {_size(nodes)}; a Firestore document holds at most "
            f"1 MiB, so heads are limited to {MAX_VALUE_BYTES} bytes"
        )


def _check_commit(run_id: str, head: str, pending: str | None, results: list[Document]) -> None:
    writes = 1 + len(results)
    total = _size(head) + _size(pending) + sum(_size(f["result"]) for _, f in results)
    if writes > MAX_COMMIT_WRITES or total > MAX_COMMIT_BYTES:
        raise LimitExceededError(
            f"a commit of run {run_id!r} would write {writes} documents and {total} bytes; "
            f"a Firestore commit allows {MAX_COMMIT_WRITES} documents and "
            f"{MAX_COMMIT_BYTES} bytes here (use a smaller step budget)"
        )


# -- cursors ----------------------------------------------------------------------------------


__all__ = [
    "MAX_COMMIT_BYTES",
    "MAX_COMMIT_WRITES",
    "MAX_VALUE_BYTES",
    "TRANSIENT_ERRORS",
    "FirestoreHistory",
    "FirestoreStore",
    "HeadRevision",
]
