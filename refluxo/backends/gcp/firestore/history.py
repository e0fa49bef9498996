"""Reading a run's committed results from Firestore, by document name, without queries."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from google.cloud import firestore

from refluxo.backends.gcp.firestore.layout import (
    HISTORY_BATCH,
    NODE_COUNTS,
    document_data,
    node_counts_of,
    result_document_id,
)
from refluxo.backends.gcp.firestore.retry import Retry
from refluxo.errors import TransientError
from refluxo.model import NodeResult
from refluxo.runtime.records import decode_result


class FirestoreHistory:
    """:class:`~refluxo.runtime.ports.HistoryReader` over a run's head and results.

    Counts and node ids come from the head's ``nodeCounts``: those of the head the reader
    was made from when it has them (no read at all), else one read of that field only,
    fresh on every call. A result is read by its name, which follows from its node id and
    index (:func:`~refluxo.backends.gcp.firestore.layout.result_document_id`): ``get`` is
    one document get, ``all`` one batched get per :data:`HISTORY_BATCH` results. Nothing
    here queries, so nothing grows with the run's history but ``all`` of a long list.
    """

    def __init__(
        self,
        client: firestore.Client,
        run: firestore.DocumentReference,
        retry: Retry,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        self._client = client
        self._run = run
        self._results = run.collection("results")
        self._retry = retry
        self._known = dict(counts) if counts is not None else None

    def _counts(self) -> dict[str, int]:
        if self._known is not None:
            return self._known
        found = self._retry.run("history counts", lambda: self._run.get(field_paths=[NODE_COUNTS]))
        if not found.exists:
            return {}
        return node_counts_of(document_data(found))

    def count(self, node_id: str) -> int:
        return self._counts().get(node_id, 0)

    def get(self, node_id: str, index: int) -> NodeResult:
        missing = f"no result {index} for node {node_id!r}"
        if index < 0 or (self._known is not None and index >= self._known.get(node_id, 0)):
            raise IndexError(missing)
        ref = self._results.document(result_document_id(node_id, index))
        found = self._retry.run("history get", ref.get)
        if not found.exists:
            raise IndexError(missing)
        return decode_result(document_data(found)["result"])

    def all(self, node_id: str) -> list[NodeResult]:
        count = self.count(node_id)
        refs = [self._results.document(result_document_id(node_id, i)) for i in range(count)]
        texts: dict[str, str] = {}
        for start in range(0, count, HISTORY_BATCH):
            chunk = refs[start : start + HISTORY_BATCH]
            found = self._retry.run("history all", functools.partial(self._read, chunk))
            texts.update(found)
        missing = [ref.id for ref in refs if ref.id not in texts]
        if missing:
            raise TransientError(
                f"{len(missing)} of the {count} results of node {node_id!r} of "
                f"{self._run.path} vanished while read (the first: {missing[0]})"
            )
        return [decode_result(texts[ref.id]) for ref in refs]

    def _read(self, refs: list[firestore.DocumentReference]) -> dict[str, str]:
        """The ``result`` text of each of ``refs`` that exists, by document id."""
        return {
            snapshot.id: document_data(snapshot)["result"]
            for snapshot in self._client.get_all(refs)
            if snapshot.exists
        }

    def node_ids(self) -> list[str]:
        return list(self._counts())
