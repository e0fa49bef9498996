"""Store backends under the contract suite. Each fixture param is one backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refluxo.backends.sqlite_db import SqliteDatabase
from refluxo.backends.sqlite_store import SqliteStore
from refluxo.runtime.protocols import SnapshotStore
from tests.conftest import FakeClock


@pytest.fixture(params=["sqlite"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[SnapshotStore]:
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path / "contract.db", synchronous="NORMAL")
        yield SqliteStore(db, clock=clock)
        db.close()
