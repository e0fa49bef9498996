"""Node definitions: what a node type does, how it is retried, and its schemas."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from refluxo.branches import declared_handles
from refluxo.context import Context
from refluxo.errors import WorkflowDefinitionError
from refluxo.model import ABSENT, RetryPolicy, StepResult

ExecutorReturn: TypeAlias = StepResult | Mapping[str, Any]
Executor: TypeAlias = Callable[[Any, Context, Any, Any], ExecutorReturn | Awaitable[ExecutorReturn]]
"""``executor(data, context, external_payload, globals)``, with ``def`` or ``async def``.

It returns a :class:`~refluxo.model.StepResult`, or the TypeScript shape
``{"data": ..., "__pause": True, "nextHandle": "..."}``. Raising is a node error.
"""


@dataclass(frozen=True, slots=True)
class NodeDefinition:
    """The behaviour of one node type.

    Args:
        executor: the node's logic (see :data:`Executor`).
        retry_policy: how the default error handler retries it; ``None`` never retries.
        metadata: free-form; a validator reads ``metadata["input"]`` / ``["output"]`` schemas,
            and ``metadata["handles"]`` lists the handles the executor may return (see
            :attr:`handles`).
    """

    executor: Executor
    retry_policy: RetryPolicy | None = None
    metadata: Any = field(default=None)

    def __post_init__(self) -> None:
        if not callable(self.executor):
            raise WorkflowDefinitionError(
                f"a node definition's executor must be callable, got {type(self.executor).__name__}"
            )
        if self.retry_policy is not None and not isinstance(self.retry_policy, RetryPolicy):
            object.__setattr__(self, "retry_policy", RetryPolicy.model_validate(self.retry_policy))
        declared_handles(self.metadata)  # a malformed declaration fails at registration

    @property
    def handles(self) -> tuple[str, ...] | None:
        """The handles the executor may return, as declared in ``metadata["handles"]``.

        ``None`` (nothing declared) means any handle, as in ``@refluxo/core``; a declaration
        lets ``refluxo validate`` and workflow registration reject an edge whose
        ``sourceHandle`` the node can never return (a typo that would otherwise end the
        run silently), and the runtime reject an undeclared handle returned at run time.
        Returning no handle (the default edge) is always allowed.
        """
        return declared_handles(self.metadata)

    @classmethod
    def coerce(cls, value: NodeDefinition | Mapping[str, Any]) -> NodeDefinition:
        """Accept a definition or its dict form (``retry_policy`` or ``retryPolicy``)."""
        if isinstance(value, NodeDefinition):
            return value
        if not isinstance(value, Mapping):
            raise WorkflowDefinitionError(
                f"a node definition must be a NodeDefinition or a dict, got {type(value).__name__}"
            )
        if "executor" not in value:
            raise WorkflowDefinitionError("a node definition needs an 'executor'")
        policy = value.get("retry_policy", value.get("retryPolicy"))
        return cls(executor=value["executor"], retry_policy=policy, metadata=value.get("metadata"))


def _check_handle_type(handle: object) -> None:
    if handle is not None and not isinstance(handle, str):
        raise TypeError(
            f"nextHandle must be a string, got {type(handle).__name__} "
            "(@refluxo/core would follow no edge for it; refluxo refuses it)"
        )


def as_step_result(value: object) -> StepResult:
    """Normalise an executor's return value, rejecting shapes that are neither form.

    A dict without ``"data"`` has no output (:data:`~refluxo.model.ABSENT`), as in
    ``@refluxo/core``. Deliberately stricter than ``@refluxo/core``, which reads a
    number, string or array return as "no output" and a non-string ``nextHandle`` as a
    handle no edge has (the run follows the edge without a handle, or completes): here
    both fail the node, since in Python they are almost always a forgotten ``StepResult``
    or a handle of the wrong type, and a silently dropped output is hard to trace.
    """
    if isinstance(value, StepResult):
        _check_handle_type(value.next_handle)
        return value
    if isinstance(value, Mapping):
        handle = value.get("nextHandle", value.get("next_handle"))
        _check_handle_type(handle)
        resume_at = value.get("resumeAt", value.get("resume_at"))
        return StepResult(
            data=value.get("data", ABSENT),
            pause=bool(value.get("__pause", value.get("pause", False))),
            next_handle=handle,
            resume_at=resume_at,
        )
    raise TypeError(
        "an executor must return a StepResult or a dict like {'data': ...}, "
        f"got {type(value).__name__} (@refluxo/core would record no output and go on; "
        "refluxo refuses it)"
    )
