"""How runs are laid out in Firestore, and how a commit is prepared for that layout.

Layout (``P`` is the constructor's ``prefix``, default ``refluxo``; ``h(x)`` is the first
32 hex digits of the SHA-256 of ``x``'s UTF-8 bytes)::

    P_runs/{h(runId)}                  the run's head
        runId, workflow, definitionVersion, status, version, createdAt, updatedAt,
        resultCount                    top-level
        dueAt                          when its next step is expected, coarsened (epoch ms);
                                       absent when nothing is expected (see "overdue runs")
        expireAt, retentionPending     once finished, with a retention (see "retention")
        hasJoins                       true once the run has waited for child runs, so it may
                                       have a join ledger (see "joining child runs")
        head                           the snapshot without its context (wire JSON string)
        input                          the run's input (JSON string)
        pending                        '{"value": ...}' (JSON string) or null
        nodeCounts                     '[[nodeId, count], ...]' (JSON string): every node
                                       with results, in first-result order
        recentCommits                  tokens of the last few commits (see "exactly once")
    P_runs/{h(runId)}/results/{h(nodeId)}-{nodeIndex}
                                       one document per committed result
        seq, nodeId, nodeIndex, result (NodeResult JSON string), expireAt (see "retention")
    P_runs/{h(parentId)}/joins/{version}/ends/{index:010d}
                                       one document per child end recorded for the parent's
                                       wait at ``version`` (see "joining child runs")
        index, runId, status, output (JSON string, completed ends only), error,
        expireAt (see "retention")
    P_runs/{h(parentId)}/joins/{version}/counts/{shard:02d}
                                       :data:`JOIN_SHARDS` counters of that wait's ends
        shard, ended, failed, expireAt (see "retention")
    P_runs/{h(parentId)}/joins/{version}/inputs/{digest}-{chunk:06d}
                                       the inputs of that wait's children, 100 per document,
                                       written before the wait's commit
                                       (``FirestoreStore.put_child_inputs``)
        items (JSON string), expireAt (see "retention")
    P_definitions/{version}            workflow, body (JSON string), createdAt

User data is kept as JSON strings because Firestore forbids nested arrays, which user JSON
may contain; the strings round-trip exactly as in the SQLite store. Everything that returns
a record returns the run id from the head's ``runId`` field, never the document's name.

Data written by the earlier layout (heads named by the run id, results by ``seq``) is not
read by this one and is not migrated: no deployment held any. ``load_run`` of a run id whose
document holds another ``runId`` (or none) answers ``None``.

Why this shape:

* Document names are spread. Firestore keeps documents in name order and splits its key
  space by ranges: callers' run ids such as ``order-1``, ``order-2`` or ``msg-<id>`` are
  close keys, and creating many of them at once writes to one range (a hotspot). Naming a
  head by a hash of its id scatters them. A result's name is a hash of its node id (node ids
  are free text: slashes, dots and any length are fine in a hash) and its index in that
  node's list, under its run's spread name.
* A step reads one document and writes two. The dispatcher's ``load_run`` reads the head,
  which carries the run's per-node result counts; the record's commit token keeps them, and
  the history reader made from that record (``history(record)``) answers every count from
  them, so numbering a step's result needs no read; the commit then writes the head and
  one document per appended result (a step usually appends one: two writes), in one batch
  guarded by the head's update time from that read (see "exactly once"), so it reads
  nothing either.
* History is read by document name, O(1) however long the run: a result's name follows
  from (node id, index), so ``get(node, i)`` is one document get (no query, no index), and
  ``all(node)`` one ``BatchGetDocuments`` per :data:`HISTORY_BATCH` names, the names known
  from the head's count for the node. ``count`` and ``node_ids`` read the head's
  ``nodeCounts`` (projected: only that field is sent) unless the reader's record carries
  them. Only the timeline queries results: ``seq > after`` ordered by ``seq`` (single
  field, within the run's subcollection).
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

Overdue runs (``overdue_runs``): ``dueAt`` is an indexed copy of
:func:`refluxo.runtime.due.expected_at` of the head and its ``updatedAt``. The exact value
of an active run is its last commit time: an ever-increasing indexed value rewritten by
every step of every run, the hotspot Firestore advises against (under 500 such writes per
second). So a commit rewrites ``dueAt`` only when the new expected time is earlier than
the stored one, or later by more than :data:`DUE_SLACK_MS` (60 s): a run stepping without
pause rewrites it about once a minute. The stored value is therefore always within
``[expected - DUE_SLACK_MS, expected]``, never later, and ``dueAt <= expected_before``
(ordered by ``dueAt``, then ``runId`` so that ties follow the run id as the port asks)
finds every overdue run plus, possibly, runs expected up to a minute after
``expected_before``. The store skips those by the exact time it computes from each head
(reading on until the page is full: they are few, only runs expected within a minute
after ``expected_before``; the caller re-checks anyway, as the port says) and
orders each page by exact time, then run id; across pages the order is the stored one,
exact to within the slack. The cursor is the stored ``dueAt`` and run id of the last
document read. When nothing is expected (finished, or paused until a caller resumes it)
the field is deleted, so such runs take no place in the index.

Retention: with ``retention_days``, a commit that finishes a run (completed or failed)
sets the head's ``expireAt`` to its commit time plus the retention (a timestamp: the TTL
policy's field), and every result of the run gets the same ``expireAt``, because a TTL
deletes single documents, never subcollections. The commit's own results are created with
it. The earlier ones are stamped by name (known from the node counts: no query): in the
finishing commit itself when there are at most :data:`INLINE_RETENTION` (and the commit
stays within :data:`MAX_COMMIT_WRITES`), else in batches of :data:`MAX_COMMIT_WRITES`
right after it, the head carrying ``retentionPending: true`` until they are done. A crash
in between leaves the marker; ``FirestoreStore.finish_retention`` (the sweep) queries it
(equality on one field) and stamps those runs' results again. A finished run is final:
it never takes another commit or result. Unfinished runs carry no ``expireAt``.

The join ledger of a run (its ``joins/*/ends/*``, ``joins/*/counts/*`` and
``joins/*/inputs/*``, below) gets the same ``expireAt``, for the same reason (a TTL policy
per collection group: ``ends``, ``counts`` and ``inputs``). Its waits are not known from
the head, which keeps only its latest wait (recording every version there would make
waits, or children, write the head), so they are listed: no ``joins/{version}`` document
is ever written, but listing ``joins`` with missing documents shown (``list_documents``:
``ListDocuments`` with ``show_missing``) returns every version under which anything was
written, and each version's ``counts``, ``ends`` and ``inputs`` are listed the same way
(names only: no field is read, and an end may hold a large output), then stamped in
batches of :data:`MAX_COMMIT_WRITES`. No collection-group query, no index, and nothing
missed however many waits the run had. To spare that listing to runs that never started
children, a commit whose snapshot carries ``childRuns`` metadata (a wait is committed
before its first child starts) sets the head's ``hasJoins``, once. A finishing commit of
such a run under a retention stamps the ledger right after it (whatever the number of
results) and sets ``retentionPending`` with it, so a crash before the ledger is stamped is
completed by the sweep, which lists the ledger of every head it finds. A child end
recorded after its parent finished (a report racing the parent's cancellation) may come
after that listing: ``record_child_end`` reads the head's ``expireAt`` in the same
``BatchGetDocuments`` as the counter shards (no extra request) and, if there is one,
stamps the end and its shard itself (or, if that fails, marks the head for the sweep).
Either the listing ran after the end was written, or the head was read after it was
finished: one of them stamps the end. (Inputs are written before the wait's commit: the
inputs of a wait commit that lost its race to a cancel, in a run that never waited
otherwise, are not stamped, as that head has no ``hasJoins``.)

Joining child runs (the :class:`~refluxo.runtime.ports.JoinLedger`): up to thousands of
children of one parent end at about the same time, and Firestore sustains about one write
per second per document, so no document is written by every child. Each end is its own
document, named by its zero-padded index (the ``joins/{version}`` document itself is never
written), and counted in one of :data:`JOIN_SHARDS` counter documents (shard ``index %
JOIN_SHARDS``, so siblings ending together spread over all of them). One batch creates the
end and increments its shard: the creation's precondition (the document must not exist)
refuses the whole batch, increment included, when the index is recorded already, so a
duplicate, a racing report or a re-sent batch whose first copy landed counts nothing (no
transaction, hence no lock on anything a sibling touches). The counts are then the sums of
the shards, read by name in one ``BatchGetDocuments`` (strongly consistent, after the
write). ``child_ends`` orders the ends by document name, which is index order thanks to the
padding: no field is queried, so no index is needed, and ``terraform/firestore.tf``
exempts every field of ``ends``, ``counts`` and ``inputs`` from single-field indexing.
Once the parent finishes under a retention, these documents carry its ``expireAt`` (see
"retention").

Indexes: three composite indexes, ``P_runs (createdAt DESC, runId DESC)`` and ``P_runs
(status ASC, createdAt DESC, runId DESC)`` to list runs newest first with ties by run id,
and ``P_runs (dueAt ASC, runId ASC)`` for overdue runs. Single-field indexes are used
for ``retentionPending`` (equality) and ``seq`` (results) only. Nothing else is queried on
its own: ``head``, ``input``, ``pending``, ``nodeCounts``, ``recentCommits``,
``updatedAt``, ``createdAt``, ``runId``, ``dueAt``, ``expireAt``, ``hasJoins`` (runs),
``result``, ``nodeId``, ``nodeIndex``, ``expireAt`` (results), every field of ``ends``,
``counts`` and ``inputs`` (the ledger) and ``body`` (definitions) are exempt from
single-field indexing (``terraform/firestore.tf``); composite indexes do not need
them. That saves index writes and, for ``updatedAt`` and ``expireAt``, avoids the hotspot
of ever-increasing indexed values (``createdAt`` is written once per run, ``dueAt`` about
once a minute per running run, each indexed only in its composite indexes).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from google.cloud import firestore

from refluxo.errors import LimitExceededError, TransientError
from refluxo.metadata import CHILD_RUNS
from refluxo.runtime.due import expected_at
from refluxo.runtime.ports import (
    AppendedResult,
    ChildEnd,
    CommitToken,
    Payload,
    RunRecord,
    StepCommit,
)
from refluxo.runtime.records import (
    decode_head,
    decode_json,
    encode_head,
    encode_json,
    encode_result,
)

MAX_VALUE_BYTES = 900_000
"""Largest serialised result, head (snapshot + input + pending + node counts) or definition.

Firestore refuses documents over 1 MiB (1,048,576 bytes, names and other fields included);
this leaves room for the rest of the document.
"""

MAX_COMMIT_BYTES = 9_000_000
"""Largest total payload of one commit's head and results (Firestore refuses requests over
10 MiB; the head's node counts, at most :data:`MAX_VALUE_BYTES`, still fit beside it)."""

MAX_COMMIT_WRITES = 500
"""Most documents one commit may write (Firestore's limit per batched write)."""

RECENT_COMMITS = 8
"""How many commit tokens the head remembers, to recognise an ambiguous commit as applied."""

HISTORY_BATCH = 500
"""Most result documents one ``BatchGetDocuments`` of ``HistoryReader.all`` asks for."""

DUE_SLACK_MS = 60_000
"""How much earlier than the exact expected time the stored ``dueAt`` may be (see
"Overdue runs" above): a later expected time within this slack leaves it as it is."""

INLINE_RETENTION = 100
"""Most earlier results a finishing commit stamps with ``expireAt`` itself; beyond, they
are stamped in batches right after it (see "Retention" above)."""

JOIN_SHARDS = 16
"""Counter documents per wait for child runs: the ends of siblings finishing together are
counted in as many documents (each sustains about one write per second). Fixed: the
counts of a wait are the sums of exactly these shards."""

END_INDEX_DIGITS = 10
"""Width of an end document's zero-padded name: name order is index order."""

JOINS = "joins"
ENDS = "ends"
COUNTS = "counts"

RUN_ID = "runId"
NODE_COUNTS = "nodeCounts"
"""The head field holding ``[[nodeId, count], ...]`` (JSON), in first-result order."""
DUE_AT = "dueAt"
EXPIRE_AT = "expireAt"
RETENTION_PENDING = "retentionPending"
HAS_JOINS = "hasJoins"
"""The head field set (``true``) once the run has waited for child runs: it may have a
join ledger to stamp when it finishes."""


def digest(text: str) -> str:
    """32 hex digits of the SHA-256 of ``text``: a spread, fixed-size document name."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def run_document_id(run_id: str) -> str:
    """The name of the head of run ``run_id`` in ``P_runs``."""
    return digest(run_id)


def result_document_id(node_id: str, index: int) -> str:
    """The name of result ``index`` of node ``node_id`` in a run's ``results``."""
    return f"{digest(node_id)}-{index}"


def result_document_ids(counts: Mapping[str, int]) -> Iterator[str]:
    """The names of every result the node counts ``counts`` describe."""
    for node_id, count in counts.items():
        prefix = digest(node_id)
        for index in range(count):
            yield f"{prefix}-{index}"


def join_document(run: firestore.DocumentReference, version: int) -> firestore.DocumentReference:
    """The (never written) document under which the wait of ``run`` at ``version`` keeps
    its ends and counts."""
    joins: firestore.CollectionReference = run.collection(JOINS)
    return joins.document(str(version))


def end_document_id(index: int) -> str:
    """The name of the end of child ``index`` in a wait's ``ends``: zero-padded."""
    if not 0 <= index < 10**END_INDEX_DIGITS:
        raise ValueError(f"a child index is between 0 and {10**END_INDEX_DIGITS - 1}: {index}")
    return f"{index:0{END_INDEX_DIGITS}d}"


def shard_document_ids() -> list[str]:
    """The names of a wait's counter shards in its ``counts``."""
    return [f"{shard:02d}" for shard in range(JOIN_SHARDS)]


def shard_document_id(index: int) -> str:
    """The counter shard that counts the end of child ``index``."""
    return shard_document_ids()[index % JOIN_SHARDS]


def end_fields(end: ChildEnd) -> dict[str, Any]:
    """The document of ``end``; refused if it would not fit in a document.

    The output of a failed end is not kept, as in the other stores.
    """
    output = None if end.failed else dump_json(end.output)
    size = byte_size(output) + byte_size(end.error) + byte_size(end.run_id)
    if size > MAX_VALUE_BYTES:
        raise LimitExceededError(
            f"the end of child run {end.run_id!r} is {size} bytes once serialised; a Firestore "
            f"document holds at most 1 MiB, so ends are limited to {MAX_VALUE_BYTES} bytes"
        )
    return {
        "index": end.index,
        RUN_ID: end.run_id,
        "status": end.status,
        "output": output,
        "error": end.error,
        "descendants": end.descendants,
    }


def end_of(data: Mapping[str, Any]) -> ChildEnd:
    """The end an end document holds."""
    return ChildEnd(
        index=int(data["index"]),
        run_id=str(data[RUN_ID]),
        status=str(data["status"]),
        output=decode_json(data.get("output")),
        error=data.get("error"),
        descendants=int(data.get("descendants") or 0),  # 0 for ends written before it
    )


def stored_due_at(stored: int | None, expected: int | None) -> int | None:
    """The ``dueAt`` to keep for a head expected at ``expected``, given the ``stored`` one.

    Rewritten only when ``expected`` is earlier than ``stored`` or later by more than
    :data:`DUE_SLACK_MS`, so the result is always within ``[expected - slack, expected]``.
    """
    if expected is None:
        return None
    if stored is None or expected < stored or expected > stored + DUE_SLACK_MS:
        return expected
    return stored


def expire_time(finished_at: int, retention_days: int) -> datetime.datetime:
    """When a run finished at ``finished_at`` (epoch ms) expires: a TTL timestamp."""
    finished = datetime.datetime.fromtimestamp(finished_at / 1000, tz=datetime.UTC)
    return finished + datetime.timedelta(days=retention_days)


def dump_json(value: Any) -> str:
    return encode_json(value)


def byte_size(text: str | None) -> int:
    return 0 if text is None else len(text.encode())


INPUT_AS_PENDING = '{"source":"input","ofInput":true}'
"""The ``pending`` field of a head whose pending payload is the run's input itself (a
start's): the head holds the input once, in ``input``, not twice (a Firestore document holds
at most 1 MiB, so an input counted twice halved the largest input a run could start with)."""


def pending_json(pending: Payload | None, input_json: str | None = None) -> str | None:
    """The ``pending`` field of ``pending``: :data:`INPUT_AS_PENDING` when it is the
    run's input (``input_json``, the ``input`` field beside it), else its JSON."""
    if pending is None:
        return None
    if (
        input_json is not None
        and pending.source == "input"
        and dump_json(pending.value) == input_json
    ):
        return INPUT_AS_PENDING
    return pending.encode()


@dataclass(frozen=True, slots=True)
class HeadRevision(CommitToken):
    """A run's head exactly as it was read: the commit token of this store's records.

    ``update_time`` is the head document's update time, which Firestore changes on every
    write to the document: a write guarded by ``last_update_time=update_time`` applies only
    if nothing touched the head since this read. ``data`` is the head's fields as read, so
    that a commit against this revision computes the next head (result count, node counts,
    commit tokens, due time, size) without reading it again; the guard proves them current.
    Revisions compare by ``update_time`` only.
    """

    update_time: Any
    data: dict[str, Any] = field(compare=False, repr=False)


def node_counts_of(data: Mapping[str, Any]) -> dict[str, int]:
    """The head's per-node result counts, in first-result order."""
    return {str(node_id): int(count) for node_id, count in json.loads(data[NODE_COUNTS])}


def record_of(data: dict[str, Any], update_time: Any = None) -> RunRecord:
    """The record of a head read from Firestore; with its update time, a revision too."""
    pending = data.get("pending")
    input_ = data.get("input")
    return RunRecord(
        run_id=data[RUN_ID],
        workflow=data["workflow"],
        definition_version=data["definitionVersion"],
        snapshot=decode_head(data["head"]),
        created_at=int(data["createdAt"]),
        updated_at=int(data["updatedAt"]),
        result_count=int(data["resultCount"]),
        input=decode_json(input_),
        pending=(
            Payload(decode_json(input_)) if pending == INPUT_AS_PENDING else Payload.decode(pending)
        ),
        token=HeadRevision(update_time, data) if update_time is not None else None,
    )


def expected_of(data: Mapping[str, Any]) -> int | None:
    """The exact time the head ``data`` expects its next step (``dueAt`` is a coarse copy)."""
    return expected_at(decode_head(data["head"]), int(data["updatedAt"]))


def document_data(snapshot: Any) -> dict[str, Any]:
    data = snapshot.to_dict()
    if data is None:
        raise TransientError(f"Firestore document {snapshot.reference.path} vanished while read")
    return cast(dict[str, Any], data)


def after_write(data: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The head ``data`` once ``fields`` (an update, maybe deleting fields) is applied."""
    merged = {**data, **fields}
    return {name: value for name, value in merged.items() if value is not firestore.DELETE_FIELD}


Document = tuple[firestore.DocumentReference, dict[str, Any]]


def record_fields(record: RunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RunRecord.__slots__}


@dataclass(frozen=True, slots=True)
class NextHead:
    """What a commit writes over a head as read, and what follows from it.

    ``fields`` update the head, ``record`` is the run as they leave it. ``stamp_now`` are
    the earlier results to stamp with ``expireAt`` in the same commit, ``stamp_after``
    those to stamp right after it, and ``stamp_ledger`` says whether the run's join
    ledger is to be stamped right after it too (either way the head then carries
    ``retentionPending``).
    """

    fields: dict[str, Any]
    record: RunRecord
    stamp_now: tuple[str, ...] = ()
    stamp_after: tuple[str, ...] = ()
    stamp_ledger: bool = False

    @property
    def stamps_after(self) -> bool:
        """Whether anything is to be stamped after the commit."""
        return bool(self.stamp_after) or self.stamp_ledger


@dataclass(frozen=True, slots=True)
class PreparedCommit:
    """A commit serialised and checked once, before any attempt: what every attempt sends.

    ``token`` is the same for every attempt, so a later attempt recognises an earlier one
    that was applied though its reply was lost. ``expire_at`` is set when the commit
    finishes the run and the store keeps finished runs for a limited time.
    """

    commit: StepCommit
    run: firestore.DocumentReference
    token: str
    now: int
    head: str
    pending: str | None
    results: list[Document]
    expire_at: datetime.datetime | None = None

    @classmethod
    def of(
        cls,
        run: firestore.DocumentReference,
        commit: StepCommit,
        now: int,
        retention_days: int | None = None,
    ) -> PreparedCommit:
        head = encode_head(commit.snapshot)
        pending = pending_json(commit.pending)
        expire_at = None
        if retention_days is not None and commit.snapshot.status.is_terminal:
            expire_at = expire_time(now, retention_days)
        results = result_documents(run, commit.results, expire_at)
        check_commit(commit.run_id, head, pending, results)
        return cls(commit, run, uuid.uuid4().hex, now, head, pending, results, expire_at)

    def next_head(
        self, data: Mapping[str, Any], inline_retention: int = INLINE_RETENTION
    ) -> NextHead:
        """The head fields to write over the head ``data``, and what follows from them.

        Raises :class:`LimitExceededError` if the new head would not fit in a document.
        """
        commit = self.commit
        before = node_counts_of(data)
        counts = before
        fields: dict[str, Any] = {
            "status": commit.snapshot.status.value,
            "version": commit.snapshot.version,
            "head": self.head,
            "pending": self.pending,
            "resultCount": int(data["resultCount"]) + len(commit.results),
            "updatedAt": self.now,
            "recentCommits": [*data.get("recentCommits", ()), self.token][-RECENT_COMMITS:],
        }
        stored = data.get(DUE_AT)
        due = stored_due_at(stored, expected_at(commit.snapshot, self.now))
        if due is None and DUE_AT in data:
            fields[DUE_AT] = firestore.DELETE_FIELD
        elif due != stored:
            fields[DUE_AT] = due
        nodes = data[NODE_COUNTS]
        if commit.results:
            counts = counted(before, commit.results)
            nodes = fields[NODE_COUNTS] = dump_json([[node_id, n] for node_id, n in counts.items()])
        input_ = data.get("input")
        check_head(commit.run_id, self.head, input_, self.pending, nodes, len(counts))
        joins = bool(data.get(HAS_JOINS))
        if not joins and has_child_runs(commit.snapshot.metadata):
            joins = fields[HAS_JOINS] = True
        stamp_now: tuple[str, ...] = ()
        stamp_after: tuple[str, ...] = ()
        if self.expire_at is not None:
            fields[EXPIRE_AT] = self.expire_at
            earlier = tuple(result_document_ids(before))
            writes = 1 + len(self.results) + len(earlier)
            if len(earlier) <= inline_retention and writes <= MAX_COMMIT_WRITES:
                stamp_now = earlier
            else:
                stamp_after = earlier
            if stamp_after or joins:
                fields[RETENTION_PENDING] = True
        record = RunRecord(
            run_id=commit.run_id,
            workflow=data["workflow"],
            definition_version=data["definitionVersion"],
            snapshot=commit.snapshot,
            created_at=int(data["createdAt"]),
            updated_at=self.now,
            result_count=fields["resultCount"],
            input=decode_json(input_),
            pending=commit.pending,
        )
        stamp_ledger = joins and self.expire_at is not None
        return NextHead(fields, record, stamp_now, stamp_after, stamp_ledger)


def has_child_runs(metadata: Mapping[str, Any]) -> bool:
    """Whether a snapshot's metadata shows a wait for child runs (or its summary): the run
    may have a join ledger."""
    return metadata.get(CHILD_RUNS) is not None


def counted(counts: Mapping[str, int], results: Sequence[AppendedResult]) -> dict[str, int]:
    """``counts`` after ``results``: a node's count is one past its highest index.

    New nodes are added in ``seq`` order, which keeps the mapping in first-result order.
    """
    after = dict(counts)
    for entry in sorted(results, key=lambda e: e.seq):
        after[entry.node_id] = max(after.get(entry.node_id, 0), entry.node_index + 1)
    return after


def result_documents(
    run: firestore.DocumentReference,
    results: Sequence[AppendedResult],
    expire_at: datetime.datetime | None = None,
) -> list[Document]:
    documents: list[Document] = []
    collection = run.collection("results")
    for entry in results:
        text = encode_result(entry.result)
        if byte_size(text) > MAX_VALUE_BYTES:
            raise LimitExceededError(
                f"the result of node {entry.node_id!r} is {byte_size(text)} bytes once serialised; "
                f"a Firestore document holds at most 1 MiB, so results are limited to "
                f"{MAX_VALUE_BYTES} bytes"
            )
        fields: dict[str, Any] = {
            "seq": entry.seq,
            "nodeId": entry.node_id,
            "nodeIndex": entry.node_index,
            "result": text,
        }
        if expire_at is not None:
            fields[EXPIRE_AT] = expire_at
        name = result_document_id(entry.node_id, entry.node_index)
        documents.append((collection.document(name), fields))
    return documents


def check_head(
    run_id: str, head: str, input_: str | None, pending: str | None, nodes: str, distinct: int
) -> None:
    """Refuse a head that would not fit in a document, saying what it is made of.

    ``nodes`` (the node counts) grows with the distinct nodes a run executed, so a head
    that fitted when the run started may outgrow the limit later: checked on every commit.
    """
    size = byte_size(head) + byte_size(input_) + byte_size(pending) + byte_size(nodes)
    if size > MAX_VALUE_BYTES:
        raise LimitExceededError(
            f"the head of run {run_id!r} would be {size} bytes: snapshot {byte_size(head)}, "
            f"input {byte_size(input_)}, pending payload {byte_size(pending)}, "
            f"result counts of its "
            f"{distinct} distinct nodes {byte_size(nodes)}; a Firestore document holds at most "
            f"1 MiB, so heads are limited to {MAX_VALUE_BYTES} bytes"
        )


def check_commit(run_id: str, head: str, pending: str | None, results: list[Document]) -> None:
    writes = 1 + len(results)
    total = byte_size(head) + byte_size(pending) + sum(byte_size(f["result"]) for _, f in results)
    if writes > MAX_COMMIT_WRITES or total > MAX_COMMIT_BYTES:
        raise LimitExceededError(
            f"a commit of run {run_id!r} would write {writes} documents and {total} bytes; "
            f"a Firestore commit allows {MAX_COMMIT_WRITES} documents and "
            f"{MAX_COMMIT_BYTES} bytes here (use a smaller step budget)"
        )
