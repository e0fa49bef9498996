"""The last look before a commit: every encoding of every secret masked in what is stored.

Executors and plugins see secrets (globals); a step's output, its error text, a failure
reason built from an exception may carry them. The redaction plugin masks outputs and error
texts as the engine records them; this applies the same :class:`~refluxo.redaction.Redactor`
once more to each result and to the head, so nothing the engine or the runtime writes on its
own (a failure reason, an unstorable output's description) escapes it.

Only user content is masked, each field on its own: a result's output (serialized as the
store will keep it, its values and its own keys) and error text; the head's failure and
pause reasons and the values of metadata the engine does not own. The engine's structure
is never touched: node ids, statuses, times, versions, retry state, the wire format's
field names, the metadata keys the engine owns. A secret equal to a node id or a field
name therefore cannot corrupt a run; such a secret is still stored where it is structure
(a node id is not secret by nature: secrets must not be used as node ids or handles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from refluxo.metadata import CANCELLED_AT, FAILED_REASON, PAUSED_REASON, RESUME_AT
from refluxo.model import NodeResult, Snapshot
from refluxo.redaction import Redactor
from refluxo.runtime.ports import AppendedResult

_ENGINE_TEXTS = frozenset({FAILED_REASON, PAUSED_REASON})
"""Metadata the engine writes whose text may quote user content (an exception's)."""

_ENGINE_VALUES = frozenset({RESUME_AT, CANCELLED_AT})
"""Metadata the engine writes and reads back: times, never masked."""

REDACTED_METADATA = "redacted"
"""The metadata key that replaces user metadata a secret spanned the syntax of."""


def scrub_results(
    results: Sequence[AppendedResult], redactor: Redactor
) -> tuple[AppendedResult, ...]:
    """``results`` with every secret masked in their outputs and error texts."""
    scrubbed = []
    for entry in results:
        result = _scrub_result(entry.result, redactor)
        if result is not entry.result:
            entry = dataclasses.replace(entry, result=result)
        scrubbed.append(entry)
    return tuple(scrubbed)


def scrub_head(head: Snapshot, redactor: Redactor) -> Snapshot:
    """``head`` (a snapshot without context) with every secret masked in its metadata's
    user content."""
    metadata = head.metadata
    if not metadata:
        return head
    user = {key: value for key, value in metadata.items() if not _engine_owned(key)}
    masked_user = redactor.mask_json(user) if user else user
    if not isinstance(masked_user, dict):
        masked_user = {REDACTED_METADATA: redactor.mask}
    changed = masked_user is not user
    scrubbed: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in _ENGINE_VALUES:
            scrubbed[key] = value
        elif key in _ENGINE_TEXTS:
            masked = _mask_field(value, redactor)
            changed = changed or masked is not value
            scrubbed[key] = masked
    if not changed:
        return head
    scrubbed.update(masked_user)
    return head.model_copy(update={"metadata": scrubbed})


def _engine_owned(key: str) -> bool:
    return key in _ENGINE_TEXTS or key in _ENGINE_VALUES


def _mask_field(value: Any, redactor: Redactor) -> Any:
    """A text masked as text, anything else as a JSON value; ``value`` itself if it holds
    no secret."""
    if isinstance(value, str):
        masked = redactor.mask_text(value)
        return value if masked == value else masked
    return redactor.mask_json(value)


def _scrub_result(result: NodeResult, redactor: Redactor) -> NodeResult:
    output = redactor.mask_json(result.output)
    error = _mask_field(result.error, redactor) if result.error else result.error
    if output is result.output and error is result.error:
        return result
    return result.model_copy(update={"output": output, "error": error})
