"""Calling user code that may be synchronous or asynchronous."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def resolve(value: T | object) -> T:
    """Await ``value`` if it is awaitable, else return it as is.

    Every extension point (executors, transform engines, validators, error handlers, plugin
    hooks) may be written with ``def`` or ``async def``; the engine passes each result here.
    """
    if inspect.isawaitable(value):
        return await value  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


def run_to_completion(coroutine: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run ``coroutine`` to its end, using ``loop`` only if it actually waits for something.

    A delivery whose executors are all synchronous never suspends; driving it directly
    avoids the event loop's per-call overhead (a task, a callback round). When it does
    suspend on a future, the rest of it runs on ``loop`` as usual.
    """
    try:
        awaited = coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    return loop.run_until_complete(_continue(coroutine, awaited))


async def _continue(coroutine: Coroutine[Any, Any, T], awaited: Any) -> T:
    """Finish a coroutine that was started by hand and is suspended on ``awaited``."""
    while True:
        if awaited is None:
            await asyncio.sleep(0)  # a bare yield: give the loop one turn
        else:
            await asyncio.wait([awaited])  # the future it waits on; its outcome is re-read
        try:
            awaited = coroutine.send(None)
        except StopIteration as finished:
            return finished.value  # type: ignore[no-any-return]
