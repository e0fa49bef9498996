"""Shared fixtures: a controllable clock and small workflow builders."""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

__all__ = ["FakeClock", "wait_until"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees another's environment variables (or the developer's cloud settings)."""
    for name in ("GOOGLE_CLOUD_PROJECT", "REFLUXO_BACKEND", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    return
