"""Helpers shared by the HTTP layer's tests."""

from __future__ import annotations

import re
from typing import Any

from refluxo.api.contract import Route
from refluxo.host.embedded import EmbeddedRuntime


def concrete_path(route: Route, value: str = "some-run") -> str:
    """The route's path with every parameter filled in."""
    return re.sub(r"\{\w+\}", value, route.path)


def database(runtime: EmbeddedRuntime) -> list[tuple[Any, ...]]:
    """Every row a request could change (runs, results, deliveries, definitions)."""
    connection = runtime.db.connection()
    return [
        (table, *row)
        for table in ("runs", "results", "deliveries", "definitions")
        for row in connection.execute(f"SELECT * FROM {table} ORDER BY 1")
    ]
