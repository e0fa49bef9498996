"""Tiny builders for engine tests."""

from __future__ import annotations

import itertools
from typing import Any


def chain(*ids: str, node_type: str = "echo") -> dict[str, Any]:
    """A linear workflow ids[0] -> ids[1] -> ... with data {"name": id}."""
    return {
        "nodes": [{"id": i, "type": node_type, "data": {"name": i}} for i in ids],
        "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(ids)],
    }


def echo(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {"data": data}
