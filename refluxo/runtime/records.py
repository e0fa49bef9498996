"""The one encoding of heads, results, inputs and payloads that every store keeps.

Stores hold user data as JSON text: Firestore forbids nested arrays, which user JSON may
contain, and SQLite has no JSON column type worth the name. Encoding in one place keeps
the stores byte-for-byte alike, so a run moved between backends reads back the same.
"""

from __future__ import annotations

import json
from typing import Any

from refluxo.model import NodeResult, Snapshot


def encode_json(value: Any) -> str:
    """Compact UTF-8 JSON, as every store keeps user values."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_json(text: str | None) -> Any:
    """The value of :func:`encode_json` text; ``None`` (absent) stays ``None``."""
    return None if text is None else json.loads(text)


def encode_head(snapshot: Snapshot) -> str:
    """A run's head: the snapshot's wire JSON (its context is empty in a head)."""
    return snapshot.model_dump_json()


def decode_head(text: str | bytes) -> Snapshot:
    return Snapshot.model_validate_json(text)


def encode_result(result: NodeResult) -> str:
    """One committed result's wire JSON."""
    return result.model_dump_json()


def decode_result(text: str | bytes) -> NodeResult:
    return NodeResult.model_validate_json(text)
