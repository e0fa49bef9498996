"""Limits the runtime enforces, each with a clear error.

Defaults are generous for workflows and tight enough to keep every stored document far
below Firestore's 1 MiB and every request cheap to reject.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from refluxo.errors import LimitExceededError, WorkflowDefinitionError
from refluxo.model import WorkflowDefinition

MAX_LIMIT = 2**53 - 1
"""The largest limit: counts derived from it (a run's descendants) stay integers that
JavaScript's numbers, and so ``@refluxo/core``, read exactly, and that every store holds."""


@dataclass(frozen=True, slots=True)
class RuntimeLimits:
    """Args:
    max_nodes, max_edges: the size of a registered workflow.
    max_node_data_bytes: the JSON size of one node's static ``data``.
    max_output_bytes: the JSON size of one step's output; a larger output fails the run
        (retrying would produce it again).
    max_steps_per_run: committed results in one run; past it the run fails with
        ``failedReason = "Step limit exceeded"``.
    max_commit_results, max_commit_bytes: a batch of steps (``StepBudget``) ends once its
        results reach either, so one commit fits every store (Firestore: 500 writes and
        10 MiB per commit).
    max_children: child runs one ``map`` node may start.
    max_child_depth: how deep child runs may nest (a child of a child ...): a workflow
        that starts itself fails at this depth instead of growing without end.
    max_descendants: child runs a run a caller started may have in all (children,
        theirs...): each wait takes its children from its run's share and splits the rest
        evenly between them, so a tree stays bounded without a counter every run updates.
    """

    max_nodes: int = 2_000
    max_edges: int = 10_000
    max_node_data_bytes: int = 64 * 1024
    max_output_bytes: int = 256 * 1024
    max_steps_per_run: int = 100_000
    max_commit_results: int = 400
    max_commit_bytes: int = 4 * 1024 * 1024
    max_children: int = 10_000
    max_child_depth: int = 10
    max_descendants: int = 100_000

    def __post_init__(self) -> None:
        for name in (field.name for field in dataclasses.fields(self)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
                raise ValueError(
                    f"RuntimeLimits.{name} must be a whole number from 1 to 2**53 - 1, "
                    f"got {value!r}"
                )

    def check_workflow(self, name: str, workflow: WorkflowDefinition) -> None:
        """Raise :class:`LimitExceededError` naming what is too large."""
        if len(workflow.nodes) > self.max_nodes:
            raise LimitExceededError(
                f"workflow {name!r} has {len(workflow.nodes)} nodes; the limit is {self.max_nodes}"
            )
        if len(workflow.edges) > self.max_edges:
            raise LimitExceededError(
                f"workflow {name!r} has {len(workflow.edges)} edges; the limit is {self.max_edges}"
            )
        for node in workflow.nodes:
            try:
                size = json_size(node.data, strict=True)
            except ValueError as err:  # UnicodeEncodeError is one too
                reason = (
                    f"a lone UTF-16 surrogate ({err.object[err.start]!r})"
                    if isinstance(err, UnicodeEncodeError)
                    else "NaN or an infinity, which JSON has no number for"
                )
                raise WorkflowDefinitionError(
                    f"workflow {name!r}: node {node.id!r} data holds {reason}"
                ) from None
            if size > self.max_node_data_bytes:
                raise LimitExceededError(
                    f"workflow {name!r}: node {node.id!r} has {size} bytes of data; "
                    f"the limit is {self.max_node_data_bytes}"
                )


def json_size(value: Any, *, strict: bool = False) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (non-JSON values count by their repr). A
    lone surrogate raises ``UnicodeEncodeError``; ``strict``: ``NaN`` and the infinities
    raise ``ValueError`` too."""
    text = json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, default=repr, allow_nan=not strict
    )
    return len(text.encode())
