"""Holding executors to the handles their node type declares.

An executor returning a handle no edge carries ends the run as ``completed`` (no edge
matches), so a typo in the executor's code (``next_handle="aproved"``) would skip the rest
of the workflow silently. A node type that declares its handles
(``@app.node(handles=[...])``) gets its executor wrapped at registration: an undeclared
handle becomes a node error naming the handle and the choices, handled like any other
error (retried per the retry policy, then the run fails). The engine is not involved:
the wrapped executor is an executor like any other, ``def`` or ``async def`` as the
original was, so the engine still offloads ``def`` executors to a thread.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable
from typing import Any

from refluxo.branches import declared_handles, undeclared_handle_message
from refluxo.context import Context
from refluxo.definitions import Executor, ExecutorReturn, NodeDefinition, as_step_result
from refluxo.model import StepResult


class UndeclaredHandle(ValueError):
    """An executor returned a handle its node type does not declare."""


def checked_handles(type_name: str, definition: NodeDefinition) -> NodeDefinition:
    """``definition`` with its executor refusing undeclared handles; unchanged when it
    declares none (any handle is allowed then, as in ``@refluxo/core``)."""
    handles = declared_handles(definition.metadata)
    if handles is None:
        return definition
    executor = definition.executor
    allowed = frozenset(handles)

    def check(raw: ExecutorReturn) -> StepResult:
        result = as_step_result(raw)
        handle = result.next_handle
        if handle is not None and handle not in allowed:
            raise UndeclaredHandle(undeclared_handle_message(type_name, handle, handles))
        return result

    async def settle(pending: Awaitable[ExecutorReturn]) -> StepResult:
        return check(await pending)

    wrapped: Executor
    if inspect.iscoroutinefunction(executor):

        @functools.wraps(executor)
        async def checked_async(
            data: Any, context: Context, payload: Any, globals_: Any
        ) -> StepResult:
            return await settle(executor(data, context, payload, globals_))

        wrapped = checked_async
    else:

        @functools.wraps(executor)
        def checked(
            data: Any, context: Context, payload: Any, globals_: Any
        ) -> StepResult | Awaitable[StepResult]:
            raw = executor(data, context, payload, globals_)
            if inspect.isawaitable(raw):  # a ``def`` returning a coroutine
                return settle(raw)
            return check(raw)

        wrapped = checked
    return NodeDefinition(
        wrapped, retry_policy=definition.retry_policy, metadata=definition.metadata
    )
