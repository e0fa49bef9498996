"""The event loop every awaiting executor of a runtime runs on.

Executors may be ``async def`` and really await (``asyncio.sleep``, ``run_in_executor``,
``asyncio.gather``, async HTTP clients), so they run on a running loop: one loop per
runtime, in a daemon thread, shared by every caller (worker threads of the local scheduler,
request threads of an HTTP server). Sharing one loop is what lets an app keep one async
client in its globals for every run.

A delivery itself is driven in place (:meth:`EventLoopThread.run_in_place`): the thread that
delivers it (a worker, a request's thread) runs the step, its ``def`` executor and its
store calls, and only hands the awaiting parts to the loop, waiting for them. One slow run
therefore holds up only its own thread, and a step with nothing to await costs no thread
switch at all (handing the step and each blocking call between the loop and a thread pool
cost more than the step).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Coroutine
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from refluxo._aio import leave_in_place, run_in_place
from refluxo.errors import TransientError, ends_the_step, node_error_for

T = TypeVar("T")

CLOSE_GRACE_S = 5.0
"""How long closing a loop lets the steps still awaiting on it end before cancelling them."""

DEFAULT_THREADS = 32
"""Threads for blocking work (synchronous executors, store and scheduler calls)."""


class EventLoopThread:
    """An asyncio loop running in its own daemon thread, started on first use.

    Args:
        name: the thread's name (shown in logs and stack dumps).
        threads: the size of the loop's default executor, which runs blocking calls.
    """

    def __init__(self, name: str = "refluxo-loop", *, threads: int = DEFAULT_THREADS) -> None:
        self._name = name
        self._threads = threads
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                loop.set_default_executor(
                    ThreadPoolExecutor(self._threads, thread_name_prefix=f"{self._name}-io")
                )
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or exception).

        Must not be called from the loop's own thread (it would wait on itself).
        """
        loop = self._started()
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("EventLoopThread.run called from its own loop; await instead")
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def run_in_place(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` in the calling thread; what it really awaits runs on the loop.

        See :func:`refluxo._aio.run_in_place`. Must not be called from the loop's thread.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("EventLoopThread.run_in_place called from its own loop")
        return run_in_place(coroutine, self.wait_for)

    def wait_for(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` on the loop and block this thread until it is done.

        The awaitable sees the caller's context variables (the run being delivered), as a
        task of the step would.
        """
        loop = self._started()
        context = contextvars.copy_context()
        context.run(leave_in_place)
        outcome: Future[T] = Future()

        async def settle() -> T:
            try:
                return await awaitable
            except Exception:
                raise
            except BaseException as raised:
                if ends_the_step(raised):
                    raise  # cancelled by close(): the step is not over
                # Raised out of a task, SystemExit or KeyboardInterrupt would stop the loop
                # every runtime's steps await on (no signal reaches this thread: the node's
                # code raised it), a CancelledError of something the node awaited would read
                # as the step cancelled; as a node error it fails only this step's node.
                raise node_error_for(raised) from None

        def begin() -> None:
            task = loop.create_task(settle(), context=context)
            task.add_done_callback(lambda done: _copy_outcome(done, outcome))

        loop.call_soon_threadsafe(begin)
        try:
            return outcome.result()
        except CancelledError:
            if loop is not self._loop:  # cancelled by close(): the step is not over
                raise TransientError(
                    "the runtime stopped while this step was awaiting; it is delivered again"
                ) from None
            raise

    def close(self, timeout: float = 10.0, *, grace: float = CLOSE_GRACE_S) -> None:
        """Stop the loop and release its threads.

        Tasks still running (steps awaiting) get ``grace`` seconds to end, then are
        cancelled: a thread waiting for one (:meth:`wait_for`) gets the cancellation
        instead of waiting forever on a loop that stopped, and its delivery is retried.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            if others:
                _, late = await asyncio.wait(others, timeout=grace)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late, timeout=1.0)
            await loop.shutdown_default_executor()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout)
        if not loop.is_running():
            loop.close()


def _copy_outcome(task: asyncio.Task[T], outcome: Future[T]) -> None:
    if task.cancelled():
        outcome.cancel()
        return
    error = task.exception()
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())
