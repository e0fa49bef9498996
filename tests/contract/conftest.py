"""Store backends under the contract suite. Each fixture param is one backend.

``firestore`` runs against the real Firestore emulator (started once per session by the
fixtures of :mod:`tests.support.gcp_fixtures`), each test in collections of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.runtime.ports import SnapshotStore
from tests.support.clock import FakeClock
from tests.support.gcp_fixtures import firestore_client, firestore_emulator, firestore_prefix

__all__ = ["firestore_client", "firestore_emulator", "firestore_prefix", "store"]


@pytest.fixture(params=["sqlite", "firestore"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[SnapshotStore]:
    if request.param == "sqlite":
        db = SqliteDatabase(tmp_path / "contract.db", synchronous="NORMAL")
        yield SqliteStore(db, clock=clock)
        db.close()
    elif request.param == "firestore":
        from refluxo.backends.gcp.firestore.store import FirestoreStore

        client = request.getfixturevalue("firestore_client")
        prefix = request.getfixturevalue("firestore_prefix")
        yield FirestoreStore(client, prefix=prefix, clock=clock)
    else:
        raise AssertionError(f"unknown store backend {request.param}")
