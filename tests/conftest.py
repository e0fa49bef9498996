"""Shared fixtures: a controllable clock and small workflow builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest


class FakeClock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees another's environment variables (or the developer's cloud settings)."""
    for name in ("GOOGLE_CLOUD_PROJECT", "REFLUXO_BACKEND", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return


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
