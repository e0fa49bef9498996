"""A run as a store keeps it, for showing: its head and results still as wire JSON.

Showing a run (``refluxo status``) needs none of what running it needs: no node types,
no engine, no models. A store that can read its rows without decoding them into
:class:`~refluxo.model.Snapshot` and :class:`~refluxo.model.NodeResult` hands them out as
these plain records, and :mod:`refluxo.api.run_json` turns them into the API's views, so
the command starts without loading pydantic or the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol, TypeVar


class StoredRun(NamedTuple):
    """A run's head row: its bookkeeping, and its snapshot as wire JSON (camelCase keys).

    ``head`` is the snapshot a store encoded (:func:`refluxo.runtime.records.encode_head`),
    decoded by :mod:`json` only; its ``context`` is empty, as in every head. A named
    tuple, as :class:`StoredResult`: defining one costs a tenth of a frozen dataclass, and
    the command that uses them starts by defining them.
    """

    run_id: str
    workflow: str
    definition_version: str
    head: dict[str, Any]
    created_at: int
    updated_at: int
    result_count: int


class StoredResult(NamedTuple):
    """One committed result, in commit order: ``result`` is a node result's wire JSON."""

    seq: int
    node_id: str
    result: dict[str, Any]


class StoredRunReader(Protocol):
    """Reads runs as stored (the embedded default's
    :class:`~refluxo.backends.sqlite.reader.SqliteRunReader`)."""

    def run(self, run_id: str) -> StoredRun | None:
        """The run's head row, or ``None`` if there is no such run."""
        ...

    def timeline(self, run_id: str, *, after_seq: int = -1, limit: int = 100) -> list[StoredResult]:
        """At most ``limit`` results committed after ``after_seq``, in commit order."""
        ...


T = TypeVar("T")

TIMELINE_PAGE_BYTES = 8 * 1024 * 1024
"""The most result JSON one timeline page holds (the first result whatever its size): a
page of 1,000 results of 256 KiB each would be 256 MB in one answer."""


def within_page_bytes(rows: Iterable[T], size: Callable[[T], int]) -> Iterator[T]:
    """``rows`` while their total ``size`` stays within :data:`TIMELINE_PAGE_BYTES` (the
    first always comes, whatever its size): stores stop reading there."""
    total = 0
    for row in rows:
        if total and total + size(row) > TIMELINE_PAGE_BYTES:
            return
        total += size(row)
        yield row
