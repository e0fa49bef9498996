"""Reading a run's committed results from Firestore, without loading its history."""

from __future__ import annotations

from collections.abc import Mapping

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from refluxo.backends.gcp.firestore.layout import NODE_COUNTS, document_data, node_counts_of
from refluxo.backends.gcp.firestore.retry import Retry
from refluxo.model import NodeResult
from refluxo.runtime.records import decode_result


class FirestoreHistory:
    """:class:`~refluxo.runtime.ports.HistoryReader` over a run's head and results.

    Counts and node ids come from the head's ``nodeCounts``: those of the head the reader
    was made from when it has them (no read at all), else one read of that field only,
    fresh on every call. Results come from the ``results`` subcollection.
    """

    def __init__(
        self,
        run: firestore.DocumentReference,
        retry: Retry,
        counts: Mapping[str, int] | None = None,
    ) -> None:
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
        query = (
            self._results.where(filter=FieldFilter("nodeId", "==", node_id))
            .where(filter=FieldFilter("nodeIndex", "==", index))
            .limit(1)
        )
        docs = self._retry.run("history get", lambda: list(query.stream()))
        if not docs:
            raise IndexError(f"no result {index} for node {node_id!r}")
        return decode_result(document_data(docs[0])["result"])

    def all(self, node_id: str) -> list[NodeResult]:
        # Equality only (no order_by): no composite index. Sorted here by nodeIndex.
        query = self._results.where(filter=FieldFilter("nodeId", "==", node_id))
        docs = self._retry.run("history all", lambda: [document_data(d) for d in query.stream()])
        docs.sort(key=lambda data: int(data["nodeIndex"]))
        return [decode_result(data["result"]) for data in docs]

    def node_ids(self) -> list[str]:
        return list(self._counts())
