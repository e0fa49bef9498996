"""Seeing everything a store kept: a scheduler that only queues, and a Firestore dump."""

from __future__ import annotations

from typing import Any

from refluxo.runtime.ports import Delivery


class ListScheduler:
    """A plain in-memory Scheduler, for tests about what the store keeps."""

    def __init__(self) -> None:
        self.queue: list[Delivery] = []

    def schedule(self, delivery: Delivery) -> None:
        self.queue.append(delivery)


def dump_collection(reference: Any) -> list[dict[str, Any]]:
    """Every document of a Firestore collection and of its subcollections, with its id."""
    documents = []
    for document in reference.stream():
        documents.append({"id": document.id, **(document.to_dict() or {})})
        for sub in document.reference.collections():
            documents.extend(dump_collection(sub))
    return documents
