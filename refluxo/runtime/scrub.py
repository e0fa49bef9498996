"""The last look before a commit: every encoding of every secret masked in what is stored.

Executors and plugins see secrets (globals); a step's output, its error text, a failure
reason built from an exception may carry them. The redaction plugin masks outputs and error
texts as the engine records them; this applies the same :class:`~refluxo.redaction.Redactor`
once more to each result and to the head exactly as a store will encode them
(:mod:`refluxo.runtime.records`), so nothing the engine or the runtime writes on its own
(a failure reason, an unstorable output's description) escapes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from refluxo.model import NodeResult, Snapshot
from refluxo.redaction import Redactor
from refluxo.runtime.ports import AppendedResult
from refluxo.runtime.records import decode_head, decode_result, encode_head, encode_result


def scrub_results(
    results: Sequence[AppendedResult], redactor: Redactor
) -> tuple[AppendedResult, ...]:
    """``results`` with every secret masked in their serialized form."""
    scrubbed = []
    for entry in results:
        text = encode_result(entry.result)
        masked = redactor.mask_text(text)
        if masked != text:
            entry = dataclasses.replace(entry, result=_result_from(masked, entry.result, redactor))
        scrubbed.append(entry)
    return tuple(scrubbed)


def scrub_head(head: Snapshot, redactor: Redactor) -> Snapshot:
    """``head`` (a snapshot without context) with every secret masked."""
    text = encode_head(head)
    masked = redactor.mask_text(text)
    if masked == text:
        return head
    try:
        return decode_head(masked)
    except ValueError:
        return head.model_copy(update={"metadata": {"redacted": redactor.mask}})


def _result_from(masked: str, original: NodeResult, redactor: Redactor) -> NodeResult:
    try:
        return decode_result(masked)
    except ValueError:
        # A secret spanned the JSON syntax: keep the result's shape, none of its content.
        return original.model_copy(
            update={"output": redactor.mask, "error": redactor.mask if original.error else None}
        )
