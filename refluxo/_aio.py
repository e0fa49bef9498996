"""Calling user code that may be synchronous or asynchronous."""

from __future__ import annotations

import inspect
from typing import TypeVar

T = TypeVar("T")


async def resolve(value: T | object) -> T:
    """Await ``value`` if it is awaitable, else return it as is.

    Every extension point (executors, transform engines, validators, error handlers, plugin
    hooks) may be written with ``def`` or ``async def``; the engine passes each result here.
    """
    if inspect.isawaitable(value):
        return await value  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]
