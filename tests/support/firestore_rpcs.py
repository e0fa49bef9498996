"""Counting the RPCs a Firestore client sends, at the GAPIC client every public call uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from google.cloud import firestore

FIRESTORE_RPCS: Final = (
    "batch_get_documents",
    "begin_transaction",
    "commit",
    "rollback",
    "run_query",
)
"""Every RPC a get, a query, a batch or a transaction of the Python client goes through."""


def count_rpcs(client: firestore.Client) -> Counter[str]:
    """A counter of ``client``'s RPCs by method name, kept up to date from now on."""
    counts: Counter[str] = Counter()
    api = client._firestore_api  # the GAPIC client the public API calls into

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return method(*args, **kwargs)

        return call

    for name in FIRESTORE_RPCS:
        setattr(api, name, counted(name, getattr(api, name)))
    return counts
