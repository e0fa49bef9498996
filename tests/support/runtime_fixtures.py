"""Fixtures of the embedded runtime, shared by the test packages that need one.

Import them in a package's conftest.py: ``from tests.support.runtime_fixtures import ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from tests.support.apps import build_app
from tests.support.clock import FakeClock


@pytest.fixture
def app(clock: FakeClock) -> App:
    return build_app(clock)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def runtime(app: App, db_path: Path) -> Iterator[EmbeddedRuntime]:
    """The embedded runtime with no background workers: tests deliver with drain()."""
    runtime = EmbeddedRuntime(app, db_path, workers=0, synchronous="NORMAL")
    yield runtime
    runtime.stop()
