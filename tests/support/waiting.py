"""Waiting for a condition with a deadline, never for a fixed delay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Block until ``condition()`` holds, re-checking it every 20 ms; fail after ``timeout``.

    For conditions only observable by asking (another process's state): the wait ends as
    soon as the condition holds, never after a fixed delay.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pause.wait(0.02)
