"""Calling user code that may be synchronous or asynchronous, on a loop or in place.

A step is a coroutine (executors, hooks and extension points may be ``async def``), but most
steps never really wait: their executors are ``def`` functions and their store calls block.
Handing such a step to an event loop thread and each of its blocking calls to a thread pool
costs several thread switches per step, more than the step itself. So a step can also be
*driven in place* (:func:`run_in_place`): the calling thread runs the coroutine to its end
in one go, calls blocking functions directly (:func:`offload`), and hands only what really
awaits (an ``async def`` executor or hook) to an event loop, waiting for it there
(:func:`resolve`). The coroutine is the same either way; only where its waits happen
differs.
"""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from types import GeneratorType
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

AwaitElsewhere = Callable[[Awaitable[Any]], Any]
"""Waits, blocking the calling thread, for an awaitable run on an event loop elsewhere."""


class _Driver(NamedTuple):
    """How the step being driven in place waits: where its awaitables go, and whether its
    thread runs an event loop of its own (known once, when the step starts)."""

    await_elsewhere: AwaitElsewhere
    loop_here: bool


_in_place: ContextVar[_Driver | None] = ContextVar("refluxo_in_place", default=None)


def run_in_place(coroutine: Coroutine[Any, Any, T], await_elsewhere: AwaitElsewhere) -> T:
    """Run ``coroutine`` to its end in the calling thread, without an event loop.

    Blocking calls made through :func:`offload` run directly in this thread; awaitables
    given to :func:`resolve` go to ``await_elsewhere``. The calling thread must not be an
    event loop's (it blocks while the step runs).

    The step runs in a copy of the caller's context, as an asyncio task would: what its
    executors set in context variables (a tenant, a log binding, ``decimal``'s precision)
    stays in the step, and is seen neither by the caller nor by the next step the thread
    drives.

    Raises:
        RuntimeError: the coroutine awaited something other than those two (a bare
            ``await`` on a future); it is closed.
    """
    context = contextvars.copy_context()
    context.run(_enter_step, _Driver(await_elsewhere, _loop_runs_here()))
    try:
        context.run(coroutine.send, None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a step driven in place awaited outside refluxo's await points")


def _enter_step(driver: _Driver) -> None:
    """In the step's own context: driven in place, with its own copy of ``decimal``'s
    context (the one object a context copy would otherwise share with the caller)."""
    _in_place.set(driver)
    decimal.setcontext(decimal.getcontext().copy())


def leave_in_place() -> None:
    """In the current context, stop driving in place: for a copy of a step's context that
    goes with an awaitable to the loop, where awaiting is done the ordinary way."""
    _in_place.set(None)


async def resolve(value: T | object) -> T:
    """Await ``value`` if it is awaitable, else return it as is.

    Every extension point (executors, transform engines, validators, error handlers, plugin
    hooks) may be written with ``def`` or ``async def``; the engine passes each result here.
    A step driven in place hands the awaitable to its event loop and waits for it there.
    """
    # Most values are plain results: only a type with ``__await__`` (a coroutine, a future,
    # any awaitable) or a generator (an old-style ``types.coroutine``) needs the full check.
    kind = type(value)
    if (hasattr(kind, "__await__") or kind is GeneratorType) and inspect.isawaitable(value):
        driver = _in_place.get()
        if driver is not None:
            return driver.await_elsewhere(value)  # type: ignore[no-any-return]
        return await value  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


async def offload(function: Callable[..., T], /, *args: Any) -> T:
    """Call a blocking ``function`` without holding up the event loop.

    On a loop it runs in the loop's thread pool (contextvars carried over); in a step driven
    in place it runs right here, in the thread that is already only this step's, unless
    that thread runs an event loop of its own (a step driven from async code, such as a
    test calling ``drain()``): then in a thread of its own, so that the function may run a
    loop itself (``asyncio.run``) as it could in the pool.
    """
    driver = _in_place.get()
    if driver is not None:
        if not driver.loop_here:
            return function(*args)
        with ThreadPoolExecutor(1, thread_name_prefix="refluxo-offload") as pool:
            return pool.submit(contextvars.copy_context().run, function, *args).result()
    return await asyncio.to_thread(function, *args)


def _loop_runs_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
