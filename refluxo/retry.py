"""Error handlers: whether a failed node is retried, and after how long."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from refluxo.definitions import NodeDefinition
    from refluxo.model import Node


class ErrorHandler:
    """Decides what happens when a node raises. Methods may be ``def`` or ``async def``.

    The base class never retries; :class:`DefaultErrorHandler` follows the node's retry policy.
    """

    def should_retry(
        self, error: BaseException, attempt: int, node: Node, definition: NodeDefinition
    ) -> Any:
        """Return true to schedule another attempt. ``attempt`` starts at 1."""
        return False

    def get_retry_delay(self, attempt: int, node: Node, definition: NodeDefinition) -> Any:
        """Milliseconds to wait before the next attempt."""
        return 0


class DefaultErrorHandler(ErrorHandler):
    """Retries per ``definition.retry_policy``, as Refluxo does.

    Retries while ``attempt <= max_attempts``; the delay is ``interval`` * 2 ** (attempt - 1)
    for ``backoff="exponential"`` and ``interval`` for any other backoff, in milliseconds,
    unrounded (``@refluxo/core``'s formula: a retry time may be fractional).
    """

    def should_retry(
        self, error: BaseException, attempt: int, node: Node, definition: NodeDefinition
    ) -> bool:
        policy = definition.retry_policy
        return policy is not None and attempt <= policy.max_attempts

    def get_retry_delay(self, attempt: int, node: Node, definition: NodeDefinition) -> float:
        policy = definition.retry_policy
        if policy is None:
            return 0
        if policy.backoff != "exponential":
            return policy.interval
        try:
            return policy.interval * 2.0 ** (attempt - 1)
        except OverflowError:  # JavaScript's Infinity: refused as a delay by the engine
            return math.inf
