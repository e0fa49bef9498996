"""The event loop every delivery of a runtime runs on.

Executors may be ``async def`` and really await (``asyncio.sleep``, ``run_in_executor``,
``asyncio.gather``, async HTTP clients), so a delivery runs as a task on a running loop: one
loop per runtime, in a daemon thread, shared by every caller (worker threads of the local
scheduler, request threads of an HTTP server). Sharing one loop is what lets an app keep one
async client in its globals for every run. Blocking work stays off the loop: synchronous
executors and store calls run in the loop's thread pool, so one slow run does not hold up
the others.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

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

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop after the tasks scheduled so far, and release its threads."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            await loop.shutdown_default_executor()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        thread.join(timeout)
        if not loop.is_running():
            loop.close()


async def blocking(function: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call in the running loop's thread pool (contextvars carried over)."""
    return await asyncio.to_thread(function, *args, **kwargs)
