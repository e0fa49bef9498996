"""A client that shows runs straight from a store, without the runtime or the app.

``refluxo status`` reads a run on the local database; it answers what
:class:`~refluxo.api.client.LocalClient` answers (the same view, the same
:class:`~refluxo.api.api_error.ApiError` for an unknown run) but from the stored rows
(:mod:`refluxo.runtime.stored`), so it needs neither the app's node types nor the engine:
a stored run is shown as it was committed, whatever the app registers today.
"""

from __future__ import annotations

from typing import Any

from refluxo.api.api_error import ApiError
from refluxo.api.run_json import run_detail_view
from refluxo.runtime.errors import RunNotFound
from refluxo.runtime.stored import StoredRunReader


class StoredClient:
    """Shows runs read by ``reader``: the :class:`~refluxo.api.client.RunReader` calls."""

    def __init__(self, reader: StoredRunReader) -> None:
        self.reader = reader

    def get(
        self, run_id: str, *, timeline_after: int = -1, timeline_limit: int = 100
    ) -> dict[str, Any]:
        run = self.reader.run(run_id)
        if run is None:
            raise ApiError.of(RunNotFound(f"no run {run_id!r}"))  # as RunService.get says
        timeline = self.reader.timeline(run_id, after_seq=timeline_after, limit=timeline_limit)
        return run_detail_view(run, timeline)
