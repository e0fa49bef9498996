"""Building google.api_core exceptions in typed tests (their constructors are untyped)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

E = TypeVar("E", bound=Exception)


def google_error(kind: type[E], message: str) -> E:
    """``kind(message)``, e.g. ``google_error(exceptions.Aborted, "contention")``."""
    return cast(Callable[[str], E], kind)(message)
