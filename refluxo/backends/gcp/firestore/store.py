"""The :class:`~refluxo.runtime.ports.SnapshotStore` on Google Cloud Firestore.

The layout is described in :mod:`refluxo.backends.gcp.firestore.layout`.

Exactly once: a commit is applied only if the head is the one the commit was computed
from, in one of two ways.

* With ``StepCommit.expected_token`` (the dispatcher passes the token of the head it
  loaded, a :class:`HeadRevision`): one batched write, no read. The head update carries
  the precondition ``last_update_time`` = the update time ``load_run`` saw, and Firestore changes a
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
:attr:`FirestoreStore.max_attempts` attempts a :class:`~refluxo.runtime.errors.TransientError`
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
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from refluxo.backends.gcp.firestore.history import FirestoreHistory
from refluxo.backends.gcp.firestore.layout import (
    MAX_VALUE_BYTES,
    NODE_COUNTS,
    HeadRevision,
    PreparedCommit,
    byte_size,
    check_head,
    document_data,
    dump_json,
    node_counts_of,
    pending_json,
    record_fields,
    record_of,
)
from refluxo.backends.gcp.firestore.retry import REFUSED_ERRORS, Retry, is_transient
from refluxo.errors import LimitExceededError
from refluxo.model import SnapshotStatus
from refluxo.runtime.cursor import decode_cursor, encode_cursor
from refluxo.runtime.ports import (
    CommitResult,
    Delivery,
    RunPage,
    RunRecord,
    StepCommit,
    TimelineEntry,
)
from refluxo.runtime.records import decode_json, decode_result, encode_head
from refluxo.steps import Clock, wall_clock_ms

T = TypeVar("T")


class FirestoreStore:
    """Runs, results and definitions in Firestore; see the module docstring for the layout.

    Args:
        client: A ``google.cloud.firestore.Client`` (thread-safe; share one per process).
        prefix: Prefix of the top-level collection names, so several deployments (or
            tests) share a database without seeing each other.
        clock: Epoch milliseconds, for ``updatedAt`` and definitions' ``createdAt``.
        max_attempts: Attempts per operation on transient failures, and the client's
            attempts per transaction on contention, before :class:`TransientError`.
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
        self._retry = Retry(max_attempts, backoff_ms, sleep)
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

    def create_run(self, record: RunRecord, first_delivery: Delivery | None = None) -> CommitResult:
        """Create the run; ``first_delivery`` is not recorded (``scheduled=False``)."""
        token = uuid.uuid4().hex
        snapshot = record.snapshot
        head = encode_head(snapshot)
        input_ = dump_json(record.input)
        pending = pending_json(record.pending)
        check_head(record.run_id, head, input_, pending, "[]", 0)
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
                data = document_data(found)
                mine = token in data.get("recentCommits", ())
                stored = record_of(record.run_id, data, found.update_time)
                return CommitResult(committed=mine, record=stored)
            transaction.create(ref, fields)
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("create_run", body)

    def load_run(self, run_id: str) -> RunRecord | None:
        """The head, with its node counts and its revision (one document read)."""
        found = self._retry.run("load_run", self._runs.document(run_id).get)
        data = found.to_dict()
        return None if data is None else record_of(run_id, data, found.update_time)

    def commit(self, commit: StepCommit) -> CommitResult:
        """Write head and results atomically if the head is still the expected one.

        With ``commit.expected_token`` (a :class:`HeadRevision` from this store): one
        batch guarded by the head's update time, no read. Without: one transaction that
        reads the head and checks its version. See the module docstring.
        """
        prepared = PreparedCommit.of(self._runs.document(commit.run_id), commit, self._clock())
        if commit.expected_token is None:
            return self._commit_in_transaction(prepared)
        revision = commit.expected_token
        if not isinstance(revision, HeadRevision):
            raise TypeError(
                f"expected_token must be a HeadRevision from FirestoreStore.load_run, "
                f"not {type(revision).__name__}"
            )
        return self._commit_at_revision(prepared, revision)

    def _commit_in_transaction(self, prepared: PreparedCommit) -> CommitResult:
        commit, run = prepared.commit, prepared.run

        def body(transaction: Any) -> CommitResult:
            found = run.get(transaction=transaction)
            if not found.exists:
                return CommitResult(committed=False)
            data = document_data(found)
            if data["version"] != commit.expected_version:
                # Our own earlier attempt may have been applied though its reply was lost.
                mine = prepared.token in data.get("recentCommits", ())
                return CommitResult(
                    committed=mine, record=record_of(run.id, data, found.update_time)
                )
            fields, record = prepared.next_head(data)
            transaction.update(run, fields)
            for ref, document in prepared.results:
                transaction.create(ref, document)
            return CommitResult(committed=True, scheduled=False, record=record)

        return self._transact("commit", body)

    def _commit_at_revision(self, prepared: PreparedCommit, revision: HeadRevision) -> CommitResult:
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
                if not is_transient(err):
                    raise
                ambiguous, last = True, err
                outcome, unchanged = self._settle(prepared, revision)
                if not unchanged:
                    return outcome
                continue  # not applied, and the guard still holds: send it again
            data = {**revision.data, **fields}
            applied = RunRecord(
                **{**record_fields(record), "token": HeadRevision(written[0].update_time, data)}
            )
            return CommitResult(committed=True, scheduled=False, record=applied)
        raise self._retry.exhausted("commit", last) from last

    def _settle(
        self, prepared: PreparedCommit, revision: HeadRevision
    ) -> tuple[CommitResult, bool]:
        """Was an ambiguous attempt applied? One read of the head decides.

        Returns the outcome (committed if the head holds the commit's token, else a lost
        race) and whether the head is still ``revision``: then nothing was applied, and
        sending the batch again is safe.
        """
        found = self._retry.run("commit check", prepared.run.get)
        if not found.exists:
            return CommitResult(committed=False), False
        data = document_data(found)
        record = record_of(prepared.run.id, data, found.update_time)
        if prepared.token in data.get("recentCommits", ()):
            return CommitResult(committed=True, scheduled=False, record=record), False
        return CommitResult(
            committed=False, record=record
        ), found.update_time == revision.update_time

    def history(self, record: RunRecord) -> FirestoreHistory:
        token = record.token
        counts = node_counts_of(token.data) if isinstance(token, HeadRevision) else None
        return FirestoreHistory(self._runs.document(record.run_id), self._retry, counts)

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
        docs = self._retry.run("timeline", lambda: [document_data(d) for d in query.stream()])
        return [
            TimelineEntry(int(data["seq"]), data["nodeId"], decode_result(data["result"]))
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
        runs = [record_of(doc.id, document_data(doc), doc.update_time) for doc in docs[:limit]]
        next_cursor = (
            encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(docs) > limit else None
        )
        return RunPage(runs=runs, next_cursor=next_cursor)

    # -- definitions ------------------------------------------------------------------------

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        """Store the definition unless ``version`` exists already (the first one stays)."""
        body = dump_json(definition)
        if byte_size(body) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"definition {version} of workflow {workflow!r} is {byte_size(body)} bytes; "
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
        return cast(dict[str, Any], decode_json(data["body"]))


__all__ = ["FirestoreStore"]
