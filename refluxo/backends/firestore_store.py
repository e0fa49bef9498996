"""The :class:`~refluxo.runtime.protocols.SnapshotStore` on Google Cloud Firestore.

Layout (``P`` is the constructor's ``prefix``, default ``refluxo``)::

    P_runs/{runId}                     the run's head
        workflow, definitionVersion, status, version, createdAt, updatedAt, resultCount
                                       top-level, queryable
        head                           the snapshot without its context (wire JSON string)
        input                          the run's input (JSON string)
        pending                        '{"value": ...}' (JSON string) or null
        recentCommits                  tokens of the last few commits (see "exactly once")
    P_runs/{runId}/results/{seq:012d}  one document per committed result
        seq, nodeId, nodeIndex, result (NodeResult JSON string)
    P_runs/{runId}/nodes/{nodeKey}     one counter per node id (nodeKey = hash of the id,
        nodeId, count, firstSeq        since node ids may contain '/')
    P_definitions/{version}            workflow, body (JSON string), createdAt

User data is kept as JSON strings because Firestore forbids nested arrays, which user JSON
may contain; the strings round-trip exactly as in the SQLite store.

Why this shape:

* Every document stays far below Firestore's 1 MiB limit however long the run: the head
  holds no results, and each result has its own document. A single result (or a head)
  larger than :data:`MAX_VALUE_BYTES` is refused with
  :class:`~refluxo.errors.LimitExceededError` before anything is written, instead of an
  opaque ``InvalidArgument`` from the service.
* A step's commit is one transaction touching O(1) documents whatever the history: it
  reads the head, then writes the head, one document per appended result and one counter
  per node among them (a step usually appends one result: three writes). Counters are
  written with the ``maximum``/``minimum`` field transforms, so they need no read.
* Reads are O(1) per step as well: ``count`` reads one counter, ``get`` is a query on
  ``nodeId == X and nodeIndex == i`` (equalities on two fields are served by merging the
  automatic single-field indexes), the timeline orders by ``seq`` (single field).
* No composite index is needed except for listing runs by status:
  ``P_runs (status ASC, createdAt DESC)`` (``__name__ DESC`` implied). Nothing queries
  ``head``, ``input``, ``pending``, ``updatedAt`` (runs), ``result`` (results) or ``body``
  (definitions): exempt them from single-field indexing. That saves index writes and,
  for ``updatedAt``, avoids the hotspot of an ever-increasing indexed value written by
  every commit of every run (Firestore advises under 500 such writes per second).

Exactly once: a commit is applied only if the head's ``version`` equals the expected one,
checked and written in one transaction. Contention (``Aborted``) is retried by the client
(which keeps the transaction's place in line), then by this store with a short backoff,
together with ``DeadlineExceeded``, ``ServiceUnavailable`` and ``InternalServerError``;
after :attr:`FirestoreStore.max_attempts` attempts a
:class:`~refluxo.runtime.errors.StoreError` is raised. An error on the commit call itself
is ambiguous (the write may have been applied): every commit carries a random token kept
in the head's ``recentCommits`` (the last eight), so a retry that finds its token reports it as
applied rather than as a lost race. The store cannot record deliveries in the same
transaction, so ``StepCommit.outbox`` and ``acknowledge`` are ignored and every commit
returns ``scheduled=False``: the dispatcher schedules after the commit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from refluxo.engine import Clock, wall_clock_ms
from refluxo.errors import LimitExceededError
from refluxo.model import NodeResult, Snapshot, SnapshotStatus
from refluxo.runtime.errors import BadRequest, StoreError
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
"""Largest serialised result, head (snapshot + input + pending) or definition accepted.

Firestore refuses documents over 1 MiB (1,048,576 bytes, names and other fields included);
this leaves room for the rest of the document.
"""

MAX_COMMIT_BYTES = 9_000_000
"""Largest total payload of one commit (Firestore refuses requests over 10 MiB)."""

MAX_COMMIT_WRITES = 500
"""Most documents one commit may write (Firestore's limit per transaction)."""

RECENT_COMMITS = 8
"""How many commit tokens the head remembers, to recognise an ambiguous commit as applied."""

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


def node_key(node_id: str) -> str:
    """The document id of ``node_id``'s counter: a hash, since node ids may contain '/'."""
    return hashlib.sha256(node_id.encode()).hexdigest()[:32]


def _record(run_id: str, data: dict[str, Any]) -> RunRecord:
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

    def run(self, operation: str, action: Callable[[], T]) -> T:
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                delay_ms = min(1_000.0, self.backoff_ms * 2 ** (attempt - 1))
                self.sleep(delay_ms * random.uniform(0.5, 1.0) / 1000)
            try:
                return action()
            except Exception as err:
                if not _is_transient(err):
                    raise
                last = err
        raise StoreError(
            f"Firestore {operation} failed after {self.max_attempts} attempts "
            f"(contention or unavailability): {last}"
        ) from last


class FirestoreHistory:
    """:class:`~refluxo.runtime.protocols.HistoryReader` over a run's subcollections."""

    def __init__(self, run: firestore.DocumentReference, retry: _Retry) -> None:
        self._results = run.collection("results")
        self._nodes = run.collection("nodes")
        self._retry = retry

    def count(self, node_id: str) -> int:
        def read() -> int:
            data = self._nodes.document(node_key(node_id)).get().to_dict()
            return 0 if data is None else int(data["count"])

        return self._retry.run("history count", read)

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
        query = self._nodes.order_by("firstSeq")
        docs = self._retry.run("history node_ids", lambda: [_data(d) for d in query.stream()])
        return [str(data["nodeId"]) for data in docs]


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
        _check_head(record.run_id, head, input_, pending)
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
            "recentCommits": [token],
        }
        ref = self._runs.document(record.run_id)

        def body(transaction: Any) -> CommitResult:
            found = ref.get(transaction=transaction)
            if found.exists:
                data = _data(found)
                mine = token in data.get("recentCommits", ())
                return CommitResult(committed=mine, record=_record(record.run_id, data))
            transaction.create(ref, fields)
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("create_run", body)

    def load_run(self, run_id: str) -> RunRecord | None:
        found = self._retry.run("load_run", self._runs.document(run_id).get)
        data = found.to_dict()
        return None if data is None else _record(run_id, data)

    def commit(self, commit: StepCommit) -> CommitResult:
        """Check the version and write head, results and counters in one transaction."""
        token = uuid.uuid4().hex
        now = self._clock()
        run = self._runs.document(commit.run_id)
        head = commit.snapshot.model_dump_json()
        pending = _pending_json(commit.pending)
        results = _result_documents(run, commit.results)
        counters = _counter_documents(run, commit.results)
        _check_commit(commit.run_id, head, pending, results, counters)

        def body(transaction: Any) -> CommitResult:
            found = run.get(transaction=transaction)
            if not found.exists:
                return CommitResult(committed=False)
            data = _data(found)
            recent: list[str] = list(data.get("recentCommits", ()))
            if data["version"] != commit.expected_version:
                # Our own earlier attempt may have been applied though its reply was lost.
                return CommitResult(committed=token in recent, record=_record(commit.run_id, data))
            _check_head(commit.run_id, head, data.get("input"), pending)
            count = int(data["resultCount"]) + len(commit.results)
            transaction.update(
                run,
                {
                    "status": commit.snapshot.status.value,
                    "version": commit.snapshot.version,
                    "head": head,
                    "pending": pending,
                    "resultCount": count,
                    "updatedAt": now,
                    "recentCommits": [*recent, token][-RECENT_COMMITS:],
                },
            )
            for ref, fields in results:
                transaction.set(ref, fields)
            for ref, fields in counters:
                transaction.set(ref, fields, merge=True)
            input_ = data.get("input")
            record = RunRecord(
                run_id=commit.run_id,
                workflow=data["workflow"],
                definition_version=data["definitionVersion"],
                snapshot=commit.snapshot,
                created_at=int(data["createdAt"]),
                updated_at=now,
                result_count=count,
                input=json.loads(input_) if input_ is not None else None,
                pending=commit.pending,
            )
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("commit", body)

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
            created_at, run_id = _decode_cursor(cursor)
            query = query.start_after({"createdAt": created_at, "__name__": run_id})
        query = query.limit(limit + 1)
        docs = self._retry.run("list_runs", lambda: list(query.stream()))
        runs = [_record(doc.id, _data(doc)) for doc in docs[:limit]]
        next_cursor = (
            _encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(docs) > limit else None
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


def _counter_documents(
    run: firestore.DocumentReference, results: Sequence[AppendedResult]
) -> list[Document]:
    """One merge-write per node: ``count`` and ``firstSeq`` as max/min transforms.

    Transforms make the counter correct without reading it first, and idempotent.
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for entry in results:
        counts[entry.node_id] = max(counts.get(entry.node_id, 0), entry.node_index + 1)
        first[entry.node_id] = min(first.get(entry.node_id, entry.seq), entry.seq)
    collection = run.collection("nodes")
    return [
        (
            collection.document(node_key(node_id)),
            {
                "nodeId": node_id,
                "count": firestore.Maximum(count),
                "firstSeq": firestore.Minimum(first[node_id]),
            },
        )
        for node_id, count in counts.items()
    ]


def _check_head(run_id: str, head: str, input_: str | None, pending: str | None) -> None:
    size = _size(head) + _size(input_) + _size(pending)
    if size > MAX_VALUE_BYTES:
        raise LimitExceededError(
            f"the head of run {run_id!r} (snapshot, input and pending payload) is {size} "
            f"bytes; a Firestore document holds at most 1 MiB, so heads are limited to "
            f"{MAX_VALUE_BYTES} bytes"
        )


def _check_commit(
    run_id: str,
    head: str,
    pending: str | None,
    results: list[Document],
    counters: list[Document],
) -> None:
    writes = 1 + len(results) + len(counters)
    total = _size(head) + _size(pending) + sum(_size(f["result"]) for _, f in results)
    if writes > MAX_COMMIT_WRITES or total > MAX_COMMIT_BYTES:
        raise LimitExceededError(
            f"a commit of run {run_id!r} would write {writes} documents and {total} bytes; "
            f"a Firestore transaction allows {MAX_COMMIT_WRITES} documents and "
            f"{MAX_COMMIT_BYTES} bytes here (use a smaller step budget)"
        )


# -- cursors ----------------------------------------------------------------------------------


def _encode_cursor(created_at: int, run_id: str) -> str:
    return base64.urlsafe_b64encode(_dump([created_at, run_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        created_at, run_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(created_at, int) or not isinstance(run_id, str) or not run_id:
            raise ValueError(cursor)
    except (ValueError, TypeError) as err:
        raise BadRequest("invalid cursor") from err
    return created_at, run_id


__all__ = [
    "MAX_COMMIT_BYTES",
    "MAX_COMMIT_WRITES",
    "MAX_VALUE_BYTES",
    "TRANSIENT_ERRORS",
    "FirestoreHistory",
    "FirestoreStore",
    "node_key",
]
