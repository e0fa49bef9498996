"""JSON objects read strictly: a key given twice is refused, not resolved.

``{"nodes": [...], "nodes": []}`` means whatever the reader decides (Python and JavaScript
take the last, others the first), so every reader of user JSON in refluxo (the HTTP API,
workflow files, ``refluxo validate``) refuses it instead of picking one.
"""

from __future__ import annotations

from typing import Any


class DuplicateKey(ValueError):
    """A JSON object names ``key`` more than once."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} appears more than once in an object")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, unless a key repeats."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return value
