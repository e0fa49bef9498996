"""How runs are laid out in Firestore, and how a commit is prepared for that layout.

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
  which carries the run's per-node result counts; the record's commit token keeps them, and
  the history reader made from that record (``history(record)``) answers every count from
  them, so numbering a step's result needs no read; the commit then writes the head and
  one document per appended result (a step usually appends one: two writes), in one batch
  guarded by the
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
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from google.cloud import firestore

from refluxo.errors import LimitExceededError, TransientError
from refluxo.runtime.ports import AppendedResult, CommitToken, Payload, RunRecord, StepCommit
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
"""Most documents one commit may write (Firestore's limit per transaction)."""

RECENT_COMMITS = 8
"""How many commit tokens the head remembers, to recognise an ambiguous commit as applied."""

NODE_COUNTS = "nodeCounts"
"""The head field holding ``[[nodeId, count], ...]`` (JSON), in first-result order."""


def dump_json(value: Any) -> str:
    return encode_json(value)


def byte_size(text: str | None) -> int:
    return 0 if text is None else len(text.encode())


def pending_json(pending: Payload | None) -> str | None:
    return None if pending is None else pending.encode()


@dataclass(frozen=True, slots=True)
class HeadRevision(CommitToken):
    """A run's head exactly as it was read: the commit token of this store's records.

    ``update_time`` is the head document's update time, which Firestore changes on every
    write to the document: a write guarded by ``last_update_time=update_time`` applies only
    if nothing touched the head since this read. ``data`` is the head's fields as read, so
    that a commit against this revision computes the next head (result count, node counts,
    commit tokens, size) without reading it again; the guard proves them current.
    Revisions compare by ``update_time`` only.
    """

    update_time: Any
    data: dict[str, Any] = field(compare=False, repr=False)


def node_counts_of(data: Mapping[str, Any]) -> dict[str, int]:
    """The head's per-node result counts, in first-result order."""
    return {str(node_id): int(count) for node_id, count in json.loads(data[NODE_COUNTS])}


def record_of(run_id: str, data: dict[str, Any], update_time: Any = None) -> RunRecord:
    """The record of a head read from Firestore; with its update time, a revision too."""
    pending = data.get("pending")
    input_ = data.get("input")
    return RunRecord(
        run_id=run_id,
        workflow=data["workflow"],
        definition_version=data["definitionVersion"],
        snapshot=decode_head(data["head"]),
        created_at=int(data["createdAt"]),
        updated_at=int(data["updatedAt"]),
        result_count=int(data["resultCount"]),
        input=decode_json(input_),
        pending=Payload.decode(pending),
        token=HeadRevision(update_time, data) if update_time is not None else None,
    )


def document_data(snapshot: Any) -> dict[str, Any]:
    data = snapshot.to_dict()
    if data is None:
        raise TransientError(f"Firestore document {snapshot.reference.path} vanished while read")
    return cast(dict[str, Any], data)


Document = tuple[firestore.DocumentReference, dict[str, Any]]


def record_fields(record: RunRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in RunRecord.__slots__}


@dataclass(frozen=True, slots=True)
class PreparedCommit:
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
    def of(cls, run: firestore.DocumentReference, commit: StepCommit, now: int) -> PreparedCommit:
        head = encode_head(commit.snapshot)
        pending = pending_json(commit.pending)
        results = result_documents(run, commit.results)
        check_commit(commit.run_id, head, pending, results)
        return cls(commit, run, uuid.uuid4().hex, now, head, pending, results)

    def next_head(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], RunRecord]:
        """The head fields to write over the head ``data``, and the record they make.

        Raises :class:`LimitExceededError` if the new head would not fit in a document.
        """
        commit = self.commit
        counts = node_counts_of(data)
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
            counts = counted(counts, commit.results)
            nodes = fields[NODE_COUNTS] = dump_json([[node_id, n] for node_id, n in counts.items()])
        input_ = data.get("input")
        check_head(commit.run_id, self.head, input_, self.pending, nodes, len(counts))
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
        return fields, record


def counted(counts: Mapping[str, int], results: Sequence[AppendedResult]) -> dict[str, int]:
    """``counts`` after ``results``: a node's count is one past its highest index.

    New nodes are added in ``seq`` order, which keeps the mapping in first-result order.
    """
    after = dict(counts)
    for entry in sorted(results, key=lambda e: e.seq):
        after[entry.node_id] = max(after.get(entry.node_id, 0), entry.node_index + 1)
    return after


def result_documents(
    run: firestore.DocumentReference, results: Sequence[AppendedResult]
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
        fields = {
            "seq": entry.seq,
            "nodeId": entry.node_id,
            "nodeIndex": entry.node_index,
            "result": text,
        }
        documents.append((collection.document(f"{entry.seq:012d}"), fields))
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
