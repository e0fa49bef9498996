"""A clock tests move by hand."""

from __future__ import annotations


class FakeClock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms
