"""The :class:`~refluxo.runtime.ports.SnapshotStore` on Google Cloud Firestore.

The layout is described in :mod:`refluxo.backends.gcp.firestore.layout`: heads and
results named by hashes (history is read by name, never queried), the coarse ``dueAt``
behind :meth:`FirestoreStore.overdue_runs`, and the ``expireAt`` of finished runs (head,
results and join ledger), whose interrupted stamping
:meth:`FirestoreStore.finish_retention` completes.

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
* Without it (resume, cancel, or a caller holding no revision): one read of the head,
  whose ``version`` must be the expected one, then the same guarded batch at the revision
  read. No transaction: Firestore's server client libraries lock what a transaction reads,
  so two commits that read one head contend for it until one is aborted, while a
  guarded batch takes no lock; the loser's batch is refused and reported as a lost race.

A run is created the same way, without a transaction: one ``create`` of the head, which
Firestore refuses (``AlreadyExists``) if the run exists.

Transient failures (``Aborted``, ``DeadlineExceeded``, ``ServiceUnavailable``,
``InternalServerError``) are retried with a short backoff; after
:attr:`FirestoreStore.max_attempts` attempts a :class:`~refluxo.runtime.errors.TransientError`
is raised, never a conflict. An error on the commit call itself is ambiguous (the write
may have been applied): every commit carries a random token kept in the head's
``recentCommits`` (the last eight). A retry that finds its token reports the commit (or
the creation) as applied rather than as a lost race. A batch is never re-sent blindly (the
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
import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, cast

from google.api_core import exceptions as google_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from refluxo.backends.gcp.firestore.history import FirestoreHistory
from refluxo.backends.gcp.firestore.layout import (
    COUNTS,
    DUE_AT,
    END_INDEX_DIGITS,
    ENDS,
    EXPIRE_AT,
    HAS_JOINS,
    INLINE_RETENTION,
    JOINS,
    MAX_COMMIT_WRITES,
    MAX_VALUE_BYTES,
    NODE_COUNTS,
    RETENTION_PENDING,
    RUN_ID,
    HeadRevision,
    NextHead,
    PreparedCommit,
    after_write,
    byte_size,
    check_head,
    document_data,
    dump_json,
    end_document_id,
    end_fields,
    end_of,
    expected_of,
    expire_time,
    has_child_runs,
    join_document,
    node_counts_of,
    pending_json,
    record_fields,
    record_of,
    result_document_ids,
    run_document_id,
    shard_document_id,
    shard_document_ids,
)
from refluxo.backends.gcp.firestore.retry import REFUSED_ERRORS, Retry, is_transient
from refluxo.errors import LimitExceededError, TransientError
from refluxo.model import SnapshotStatus
from refluxo.runtime.cursor import decode_cursor, encode_cursor
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import (
    ChildEnd,
    CommitResult,
    Delivery,
    JoinCount,
    RunPage,
    RunRecord,
    StepCommit,
    TimelineEntry,
)
from refluxo.runtime.records import decode_json, decode_result, encode_head
from refluxo.runtime.stored import within_page_bytes
from refluxo.steps import Clock, wall_clock_ms

logger = logging.getLogger("refluxo.firestore")


OVERDUE_SCAN_FACTOR = 4
"""Documents one ``overdue_runs`` call reads per run it may return (plus a chunk)."""

OVERDUE_MIN_CHUNK = 100
"""Documents read per query while skipping runs expected just after the cutoff."""


INPUTS = "inputs"
"""The collection, under a wait's ``joins/{version}`` document, of its children's inputs."""

INPUTS_PER_DOCUMENT = 100
"""Child inputs per document: a report reads one document for its next sibling's input."""

INPUT_CHUNKS_REMEMBERED = 64
"""Decoded input documents a store keeps (the most recently read)."""

MAX_BATCH_WRITES = 500
"""Writes Firestore accepts in one batch."""

LEDGER_COLLECTIONS = (COUNTS, ENDS, INPUTS)
"""The collections under a wait's ``joins/{version}``: stamped with the run's ``expireAt``."""


class FirestoreStore:
    """Runs, results and definitions in Firestore; see the module docstring for the layout.

    Args:
        client: A ``google.cloud.firestore.Client`` (thread-safe; share one per process).
        prefix: Prefix of the top-level collection names, so several deployments (or
            tests) share a database without seeing each other.
        clock: Epoch milliseconds, for ``updatedAt`` and definitions' ``createdAt``.
        max_attempts: Attempts per operation on transient failures before
            :class:`TransientError`.
        backoff_ms: First delay between this store's attempts; doubled each time, capped
            at one second, with jitter.
        retention_days: Finished runs and their results get ``expireAt`` this many days
            after they finish, for Firestore's TTL policy to delete them; ``None`` keeps
            them forever.
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
        retention_days: int | None = None,
    ) -> None:
        if retention_days is not None and retention_days < 1:
            raise ValueError("retention_days must be at least 1, or None")
        self.client = client
        self.prefix = prefix
        self.max_attempts = max_attempts
        self.retention_days = retention_days
        self._input_chunks: OrderedDict[tuple[str, int, str, int], list[Any]] = OrderedDict()
        self._inputs_lock = threading.Lock()
        self._stored_definitions: set[str] = set()
        """Definition versions this store has stored or found stored."""
        self.inline_retention = INLINE_RETENTION
        """Most earlier results a finishing commit stamps with ``expireAt`` itself."""
        self._clock = clock
        self._retry = Retry(max_attempts, backoff_ms, sleep)
        self._runs = client.collection(f"{prefix}_runs")
        self._definitions = client.collection(f"{prefix}_definitions")

    def _head(self, run_id: str) -> firestore.DocumentReference:
        return self._runs.document(run_document_id(run_id))

    # -- runs -----------------------------------------------------------------------------

    def create_run(self, record: RunRecord, first_delivery: Delivery | None = None) -> CommitResult:
        """Create the run; ``first_delivery`` is not recorded (``scheduled=False``)."""
        token = uuid.uuid4().hex
        snapshot = record.snapshot
        head = encode_head(snapshot)
        input_ = dump_json(record.input)
        pending = pending_json(record.pending, input_)
        check_head(record.run_id, head, input_, pending, "[]", 0)
        fields: dict[str, Any] = {
            RUN_ID: record.run_id,
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
        due = expected_at(snapshot, record.updated_at)
        if due is not None:
            fields[DUE_AT] = due
        if self.retention_days is not None and snapshot.status.is_terminal:
            fields[EXPIRE_AT] = expire_time(record.updated_at, self.retention_days)
        if has_child_runs(snapshot.metadata):
            fields[HAS_JOINS] = True
        ref = self._head(record.run_id)
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            self._retry.backoff(attempt)
            batch = self.client.batch()
            batch.create(ref, fields)
            try:
                # retry=None: a copy re-sent by the client after a lost reply would be
                # refused as existing; this store settles that with the token instead.
                batch.commit(retry=None)
            except Exception as err:
                # Refused as existing, or no answer (applied or not): the head decides.
                if not isinstance(err, google_exceptions.AlreadyExists):
                    if not is_transient(err):
                        raise
                    last = err
                existing = self._existing_run(ref, record.run_id, token)
                if existing is not None:
                    return existing
                continue  # no run (not applied, or deleted since): create again
            return CommitResult(committed=True, scheduled=False, record=record)
        raise self._retry.exhausted("create_run", last) from last

    def _existing_run(
        self, ref: firestore.DocumentReference, run_id: str, token: str
    ) -> CommitResult | None:
        """The outcome of a create that found (or may have made) the head: created by this
        call if the head holds ``token``, else a run that existed already; ``None`` if
        there is no head."""
        found = self._retry.run("create_run check", ref.get)
        if not found.exists:
            return None
        data = document_data(found)
        if data.get(RUN_ID) != run_id:
            raise RuntimeError(
                f"run {run_id!r} is named like run {data.get(RUN_ID)!r}: "
                f"a SHA-256 prefix collision, or a head of an earlier layout"
            )
        mine = token in data.get("recentCommits", ())
        return CommitResult(committed=mine, record=record_of(data, found.update_time))

    def load_run(self, run_id: str) -> RunRecord | None:
        """The head, with its node counts and its revision (one document read)."""
        found = self._retry.run("load_run", self._head(run_id).get)
        data = found.to_dict()
        if data is None or data.get(RUN_ID) != run_id:
            return None
        return record_of(data, found.update_time)

    def commit(self, commit: StepCommit) -> CommitResult:
        """Write head and results atomically if the head is still the expected one.

        With ``commit.expected_token`` (a :class:`HeadRevision` from this store): one
        batch guarded by the head's update time, no read. Without: one read of the head,
        whose version must be the expected one, then the same guarded batch. See the
        module docstring. A commit that finishes a run under a retention stamps the run's
        results after it when there are too many to stamp in the commit itself, and its
        join ledger if it waited for child runs (see :meth:`finish_retention`).
        """
        prepared = PreparedCommit.of(
            self._head(commit.run_id), commit, self._clock(), self.retention_days
        )
        if commit.expected_token is None:
            outcome, after = self._commit_reading_head(prepared)
        else:
            revision = commit.expected_token
            if not isinstance(revision, HeadRevision):
                raise TypeError(
                    f"expected_token must be a HeadRevision from FirestoreStore.load_run, "
                    f"not {type(revision).__name__}"
                )
            outcome, after = self._commit_at_revision(prepared, revision)
        if after is None or not after.stamps_after or not outcome.committed:
            return outcome
        return self._stamp_after_commit(prepared, after, outcome)

    def _commit_reading_head(
        self, prepared: PreparedCommit
    ) -> tuple[CommitResult, NextHead | None]:
        """Read the head, check its version, then commit at the revision read.

        No transaction: a Firestore transaction locks what it reads, and two that read one
        head contend for its lock until one is aborted (on the emulator, with no backoff,
        both may be, again and again). A guarded batch takes no lock. A refusal whose
        cause left the version as expected (a write that is not a step, such as a
        retention stamp) reads again.
        """
        expected = prepared.commit.expected_version
        for _ in range(self.max_attempts):
            found = self._retry.run("commit read", prepared.run.get)
            if not found.exists:
                return CommitResult(committed=False), None
            data = document_data(found)
            if data["version"] != expected:
                return CommitResult(
                    committed=prepared.token in data.get("recentCommits", ()),
                    record=record_of(data, found.update_time),
                ), None
            outcome, after = self._commit_at_revision(
                prepared, HeadRevision(found.update_time, data)
            )
            moved = outcome.record is not None and outcome.record.version != expected
            if outcome.committed or moved:
                return outcome, after
            # Refused, or not applied while something else wrote the head: read again.
        raise TransientError(
            f"Firestore commit of run {prepared.commit.run_id!r} failed after "
            f"{self.max_attempts} attempts: its head kept changing at version {expected}"
        )

    @staticmethod
    def _stamp(after: NextHead) -> dict[str, Any]:
        return {EXPIRE_AT: after.fields[EXPIRE_AT]}

    def _commit_at_revision(
        self, prepared: PreparedCommit, revision: HeadRevision
    ) -> tuple[CommitResult, NextHead | None]:
        """One guarded batch; an ambiguous failure is settled by one read of the head."""
        if revision.data["version"] != prepared.commit.expected_version:
            return CommitResult(committed=False), None  # cannot match: nothing to send
        after = prepared.next_head(revision.data, self.inline_retention)
        guard = self.client.write_option(last_update_time=revision.update_time)
        results = prepared.run.collection("results")
        ambiguous = False
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            self._retry.backoff(attempt)
            batch = self.client.batch()
            batch.update(prepared.run, after.fields, option=guard)
            for ref, document in prepared.results:
                batch.create(ref, document)
            for name in after.stamp_now:
                batch.update(results.document(name), self._stamp(after))
            try:
                # retry=None: the client's own retry of Commit would re-send a batch whose
                # first copy may have landed, and report the copy's refusal as a lost race.
                written = batch.commit(retry=None)
            except REFUSED_ERRORS:
                if not ambiguous:
                    return CommitResult(committed=False), None
                # An earlier copy, whose reply was lost, may have landed after the check.
                return self._settle(prepared, revision)[0], after
            except Exception as err:
                if not is_transient(err):
                    raise
                ambiguous, last = True, err
                outcome, unchanged = self._settle(prepared, revision)
                if not unchanged:
                    return outcome, after
                continue  # not applied, and the guard still holds: send it again
            data = after_write(revision.data, after.fields)
            applied = RunRecord(
                **{
                    **record_fields(after.record),
                    "token": HeadRevision(written[0].update_time, data),
                }
            )
            return CommitResult(committed=True, scheduled=False, record=applied), after
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
        record = record_of(data, found.update_time)
        if prepared.token in data.get("recentCommits", ()):
            return CommitResult(committed=True, scheduled=False, record=record), False
        return CommitResult(
            committed=False, record=record
        ), found.update_time == revision.update_time

    # -- retention ------------------------------------------------------------------------

    def _stamp_after_commit(
        self, prepared: PreparedCommit, after: NextHead, outcome: CommitResult
    ) -> CommitResult:
        """Stamp the earlier results (and the join ledger, if any) of a run just finished,
        then clear its marker.

        The commit is applied whatever happens here: a failure is logged and left to
        :meth:`finish_retention`, which finds the head's ``retentionPending``.
        """
        try:
            update_time = self._stamp_run(
                prepared.run, after.stamp_after, after.fields[EXPIRE_AT], ledger=after.stamp_ledger
            )
        except Exception:
            logger.warning(
                "stamping the results or join ledger of finished run %r with expireAt failed; "
                "finish_retention will complete it",
                prepared.commit.run_id,
                exc_info=True,
            )
            return outcome
        record = outcome.record
        if record is None or not isinstance(record.token, HeadRevision):
            return outcome
        data = {
            name: value for name, value in record.token.data.items() if name != RETENTION_PENDING
        }
        fresh = RunRecord(**{**record_fields(record), "token": HeadRevision(update_time, data)})
        return CommitResult(committed=True, scheduled=outcome.scheduled, record=fresh)

    def _stamp_run(
        self,
        run: firestore.DocumentReference,
        names: Sequence[str],
        expire_at: Any,
        *,
        ledger: bool,
    ) -> Any:
        """Set ``expireAt`` on the results ``names`` of ``run`` and, with ``ledger``, on
        every document of its join ledger, then clear its marker.

        Batches of :data:`MAX_COMMIT_WRITES` updates, each retried within bounds (setting
        the same value again is harmless). Returns the head's update time after.
        """
        results = run.collection("results")
        for start in range(0, len(names), MAX_COMMIT_WRITES):
            chunk = [results.document(name) for name in names[start : start + MAX_COMMIT_WRITES]]
            self._retry.run("retention", functools.partial(self._stamp_batch, chunk, expire_at))
        if ledger:
            self._stamp_ledger(run, expire_at)
        written = self._retry.run(
            "retention", lambda: run.update({RETENTION_PENDING: firestore.DELETE_FIELD})
        )
        return written.update_time

    def _stamp_ledger(self, run: firestore.DocumentReference, expire_at: Any) -> None:
        """Set ``expireAt`` on every counter shard, end and input document of every wait
        of ``run``.

        The waits are listed from ``joins`` (whose documents are never written: listing
        shows them as missing documents with subcollections), then each wait's ``counts``,
        ``ends`` and ``inputs``, names only; see "retention" in the layout.
        """
        joins: firestore.CollectionReference = run.collection(JOINS)
        waits = self._retry.run("retention", functools.partial(listed, joins))
        refs: list[firestore.DocumentReference] = []
        for wait in waits:
            for name in LEDGER_COLLECTIONS:
                collection = wait.collection(name)
                refs.extend(self._retry.run("retention", functools.partial(listed, collection)))
                # Batches of MAX_COMMIT_WRITES, filled across collections and waits.
                while len(refs) >= MAX_COMMIT_WRITES:
                    chunk, refs = refs[:MAX_COMMIT_WRITES], refs[MAX_COMMIT_WRITES:]
                    self._retry.run(
                        "retention", functools.partial(self._stamp_batch, chunk, expire_at)
                    )
        if refs:
            self._retry.run("retention", functools.partial(self._stamp_batch, refs, expire_at))

    def _stamp_batch(self, refs: list[firestore.DocumentReference], expire_at: Any) -> None:
        batch = self.client.batch()
        for ref in refs:
            batch.update(ref, {EXPIRE_AT: expire_at})
        try:
            batch.commit()
        except google_exceptions.NotFound:
            # A document the TTL policy deleted already (a sweep later than the retention
            # itself): stamp those still there.
            found = self.client.get_all(refs, field_paths=[EXPIRE_AT])
            present = [snapshot.reference for snapshot in found if snapshot.exists]
            if present:
                batch = self.client.batch()
                for ref in present:
                    batch.update(ref, {EXPIRE_AT: expire_at})
                batch.commit()

    def finish_retention(self, limit: int = 100) -> int:
        """Stamp the results and join ledgers of finished runs whose stamping was
        interrupted (a sweep).

        Finds up to ``limit`` heads marked ``retentionPending`` (a crash, or a failure,
        between a run's finishing commit and the stamping of its results and ledger), sets
        the ``expireAt`` of every result and every ledger document (ends, counter shards
        and inputs of every wait, listed: see "retention" in the layout) to the head's, and
        clears the marker. Idempotent, and safe beside a commit still stamping the same
        run. Returns how many runs it completed.
        """
        query = self._runs.where(filter=FieldFilter(RETENTION_PENDING, "==", True)).limit(limit)
        heads = self._retry.run("finish_retention", lambda: list(query.stream()))
        finished = 0
        for head in heads:
            data = head.to_dict()
            if data is None or EXPIRE_AT not in data:
                continue
            names = list(result_document_ids(node_counts_of(data)))
            try:
                # The ledger is listed whatever the head's hasJoins says: a sweep is rare,
                # and a late child end may have marked a head for it (record_child_end).
                self._stamp_run(head.reference, names, data[EXPIRE_AT], ledger=True)
            except Exception:
                logger.warning(
                    "stamping the results or join ledger of finished run %r with expireAt "
                    "failed again",
                    data.get(RUN_ID),
                    exc_info=True,
                )
                continue
            finished += 1
        return finished

    # -- reading ----------------------------------------------------------------------------

    def history(self, record: RunRecord) -> FirestoreHistory:
        token = record.token
        counts = node_counts_of(token.data) if isinstance(token, HeadRevision) else None
        return FirestoreHistory(self.client, self._head(record.run_id), self._retry, counts)

    def timeline(
        self, run_id: str, *, after_seq: int = -1, limit: int = 100
    ) -> list[TimelineEntry]:
        query = (
            self._head(run_id)
            .collection("results")
            .where(filter=FieldFilter("seq", ">", after_seq))
            .order_by("seq")
            .limit(limit)
        )
        docs = self._retry.run(
            "timeline",
            lambda: list(
                within_page_bytes(
                    (document_data(d) for d in query.stream()), lambda data: len(data["result"])
                )
            ),
        )
        return [
            TimelineEntry(int(data["seq"]), data["nodeId"], decode_result(data["result"]))
            for data in docs
        ]

    def list_runs(
        self, *, status: SnapshotStatus | None = None, limit: int = 50, cursor: str | None = None
    ) -> RunPage:
        """Runs newest ``createdAt`` first, ties by run id descending, like the SQLite store.

        Ordered by the ``runId`` field, not the document's (hashed) name: composite indexes
        ``(createdAt DESC, runId DESC)`` and ``(status, createdAt DESC, runId DESC)``.
        """
        query: Any = self._runs
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status.value))
        query = query.order_by("createdAt", direction=firestore.Query.DESCENDING).order_by(
            RUN_ID, direction=firestore.Query.DESCENDING
        )
        if cursor is not None:
            created_at, run_id = decode_cursor(cursor)
            query = query.start_after({"createdAt": created_at, RUN_ID: run_id})
        query = query.limit(limit + 1)
        docs = self._retry.run("list_runs", lambda: list(query.stream()))
        runs = [record_of(document_data(doc), doc.update_time) for doc in docs[:limit]]
        next_cursor = (
            encode_cursor(runs[-1].created_at, runs[-1].run_id) if len(docs) > limit else None
        )
        return RunPage(runs=runs, next_cursor=next_cursor)

    def overdue_runs(
        self, expected_before: int, *, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """Runs whose next step was expected at or before ``expected_before`` (epoch ms).

        Queries the coarse ``dueAt`` (``<= expected_before``, ordered by ``dueAt`` then
        ``runId``: the composite index ``(dueAt ASC, runId ASC)``), which finds every
        overdue run and possibly runs expected up to
        :data:`~refluxo.backends.gcp.firestore.layout.DUE_SLACK_MS` later; those are
        skipped here by the exact time of their heads, reading on until the page is full or
        the query exhausted, reading at most ``OVERDUE_SCAN_FACTOR * limit + OVERDUE_MIN_CHUNK``
        documents per call (a page may then hold fewer runs than ``limit``, or none, with a
        cursor to continue). A page is ordered by exact expected time, then run id; pages
        follow one another in the order of the stored ``dueAt`` (then run id), so across
        pages the order is exact to within the slack. The cursor is the stored ``dueAt``
        and run id of the last document read.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query: Any = (
            self._runs.where(filter=FieldFilter(DUE_AT, "<=", expected_before))
            .order_by(DUE_AT)
            .order_by(RUN_ID)
        )
        last = decode_cursor(cursor) if cursor is not None else None
        overdue: list[tuple[int, RunRecord]] = []
        budget = OVERDUE_SCAN_FACTOR * limit + OVERDUE_MIN_CHUNK
        scanned = 0
        exhausted = False
        while len(overdue) < limit and scanned < budget and not exhausted:
            chunk = min(max(limit - len(overdue), OVERDUE_MIN_CHUNK), budget - scanned)
            page = query if last is None else query.start_after({DUE_AT: last[0], RUN_ID: last[1]})
            page = page.limit(chunk + 1)  # one more: is there anything after this chunk?
            docs = self._retry.run("overdue_runs", functools.partial(streamed, page))
            exhausted = len(docs) <= chunk
            for position, doc in enumerate(docs[:chunk]):
                data = document_data(doc)
                last = (int(data[DUE_AT]), str(data[RUN_ID]))
                scanned += 1
                expected = expected_of(data)
                if expected is not None and expected <= expected_before:
                    overdue.append((expected, record_of(data, doc.update_time)))
                if len(overdue) == limit:
                    # Stopped inside the chunk: what follows is still to be read.
                    exhausted = exhausted and position == len(docs[:chunk]) - 1
                    break
            # Some were expected a little later than asked: read on past them, within the
            # budget (a burst of runs expected just after the cutoff costs pages, not a
            # read per run per call).
        overdue.sort(key=lambda entry: (entry[0], entry[1].run_id))
        next_cursor = None if exhausted or last is None else encode_cursor(*last)
        return RunPage(runs=[record for _, record in overdue], next_cursor=next_cursor)

    # -- joining child runs -------------------------------------------------------------------

    def _join(self, parent_id: str, version: int) -> firestore.DocumentReference:
        return join_document(self._head(parent_id), version)

    def record_child_end(self, parent_id: str, version: int, end: ChildEnd) -> JoinCount:
        """Record ``end`` unless its index is recorded; the wait's counts after it.

        One batch creates the end's document and increments its counter shard: if the
        document exists (a duplicate, a racing report, or an earlier copy of this batch
        whose reply was lost), Firestore refuses the whole batch, so an end is counted
        exactly once. The counts are then read from every shard (see the layout), with the
        parent's ``expireAt``: a parent that finished under a retention meanwhile may have
        listed its ledger before this end was written, so the end and its shard are
        stamped here (see "retention" in the layout).
        """
        head = self._head(parent_id)
        join = join_document(head, version)
        ref = join.collection(ENDS).document(end_document_id(end.index))
        fields = end_fields(end)
        shard_id = shard_document_id(end.index)
        shard = join.collection(COUNTS).document(shard_id)
        increments = {
            "shard": shard_id,
            "ended": firestore.Increment(1),
            "failed": firestore.Increment(int(end.failed)),
        }

        def record() -> None:
            batch = self.client.batch()
            batch.create(ref, fields)
            batch.set(shard, increments, merge=True)
            with contextlib.suppress(google_exceptions.AlreadyExists):
                batch.commit()

        self._retry.run("record_child_end", record)
        count, expire_at = self._retry.run(
            "join count", functools.partial(self._join_count, join, head)
        )
        if expire_at is not None:
            self._stamp_late_end(parent_id, head, [ref, shard], expire_at)
        return count

    def _join_count(
        self, join: firestore.DocumentReference, head: firestore.DocumentReference
    ) -> tuple[JoinCount, Any]:
        """The wait's counts, summed from its shards, and the parent's ``expireAt`` (or
        ``None``), all in one ``BatchGetDocuments``."""
        counts = join.collection(COUNTS)
        refs = [head, *(counts.document(name) for name in shard_document_ids())]
        ended = failed = 0
        expire_at = None
        fields = ["ended", "failed", EXPIRE_AT]
        for snapshot in self.client.get_all(refs, field_paths=fields):
            data = snapshot.to_dict()
            if not data:
                continue
            if snapshot.reference.path == head.path:
                expire_at = data.get(EXPIRE_AT)
                continue
            ended += int(data.get("ended", 0))
            failed += int(data.get("failed", 0))
        return JoinCount(ended, failed), expire_at

    def _stamp_late_end(
        self,
        parent_id: str,
        head: firestore.DocumentReference,
        refs: list[firestore.DocumentReference],
        expire_at: Any,
    ) -> None:
        """Stamp an end (and its shard) recorded for a parent that has finished under a
        retention; on failure, mark the parent for :meth:`finish_retention`."""
        try:
            self._retry.run("retention", functools.partial(self._stamp_batch, refs, expire_at))
        except Exception:
            logger.warning(
                "stamping a child end of finished run %r with expireAt failed; "
                "marking the run for finish_retention",
                parent_id,
                exc_info=True,
            )
            try:
                self._retry.run("retention", lambda: head.update({RETENTION_PENDING: True}))
            except Exception:
                logger.warning(
                    "marking finished run %r for finish_retention failed",
                    parent_id,
                    exc_info=True,
                )

    def child_ends(
        self, parent_id: str, version: int, *, after_index: int = -1, limit: int = 1000
    ) -> list[ChildEnd]:
        """Recorded ends with ``index > after_index``, by index: the wait's ``ends``
        ordered by document name (zero-padded indexes), no field index needed."""
        if limit < 1 or after_index >= 10**END_INDEX_DIGITS - 1:
            return []
        ends = self._join(parent_id, version).collection(ENDS)
        query: Any = ends
        if after_index >= 0:
            after = ends.document(end_document_id(after_index))
            query = query.where(filter=FieldFilter(FieldPath.document_id(), ">", after))
        query = query.order_by(FieldPath.document_id()).limit(limit)
        docs = self._retry.run("child_ends", functools.partial(streamed, query))
        return [end_of(document_data(doc)) for doc in docs]

    def put_child_inputs(
        self, parent_id: str, version: int, digest: str, inputs: Sequence[Any]
    ) -> None:
        """Keep the inputs in documents of :data:`INPUTS_PER_DOCUMENT` inputs each,
        ``joins/{version}/inputs/{digest}-{chunk:06d}``, written in batches of at most 500.
        Writing them again writes the same content (the digest names it): idempotent."""
        join = self._join(parent_id, version)
        collection = join.collection(INPUTS)
        chunks = [
            (
                collection.document(f"{digest}-{start // INPUTS_PER_DOCUMENT:06d}"),
                {"items": dump_json(list(inputs[start : start + INPUTS_PER_DOCUMENT]))},
            )
            for start in range(0, len(inputs), INPUTS_PER_DOCUMENT)
        ]
        for first in range(0, len(chunks), MAX_BATCH_WRITES):

            def write(part: list[Any] = chunks[first : first + MAX_BATCH_WRITES]) -> None:
                batch = self.client.batch()
                for ref, fields in part:
                    batch.set(ref, fields)
                batch.commit()

            self._retry.run("put_child_inputs", write)

    def child_input(self, parent_id: str, version: int, digest: str, index: int) -> Any:
        """One document read (of the input's chunk), unless this process read it lately:
        a digest names its inputs for good, so a decoded chunk never goes stale."""
        if index < 0:
            raise LookupError(f"no input {index} kept for run {parent_id!r}")
        key = (parent_id, version, digest, index // INPUTS_PER_DOCUMENT)
        with self._inputs_lock:
            items = self._input_chunks.get(key)
        if items is None:
            ref = (
                self._join(parent_id, version).collection(INPUTS).document(f"{digest}-{key[3]:06d}")
            )
            found = self._retry.run("child_input", ref.get).to_dict()
            if found is None:
                raise LookupError(f"no input {index} kept for run {parent_id!r} at {version}")
            items = decode_json(found["items"])
            with self._inputs_lock:
                self._input_chunks[key] = items
                if len(self._input_chunks) > INPUT_CHUNKS_REMEMBERED:
                    self._input_chunks.popitem(last=False)
        offset = index % INPUTS_PER_DOCUMENT
        if offset >= len(items):
            raise LookupError(f"no input {index} kept for run {parent_id!r} at {version}")
        return items[offset]

    # -- definitions ------------------------------------------------------------------------

    def put_definition(self, version: str, workflow: str, definition: dict[str, Any]) -> None:
        """Store the definition unless ``version`` exists already (the first one stays).

        Once stored (or found stored) by this store, never sent again: a definition is
        content-addressed and never deleted, and every child run of a map starts with one.
        """
        if version in self._stored_definitions:
            return
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
        self._stored_definitions.add(version)

    def get_definition(self, version: str) -> dict[str, Any] | None:
        found = self._retry.run("get_definition", self._definitions.document(version).get)
        data = found.to_dict()
        if data is None:
            return None
        return cast(dict[str, Any], decode_json(data["body"]))


def streamed(query: Any) -> list[Any]:
    """Every document ``query`` answers."""
    return list(query.stream())


def listed(collection: firestore.CollectionReference) -> list[firestore.DocumentReference]:
    """Every document name in ``collection``, missing documents (never written, holding
    subcollections) included; no field is read."""
    return list(collection.list_documents(page_size=MAX_COMMIT_WRITES))


__all__ = ["FirestoreStore"]
