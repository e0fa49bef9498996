"""The emulator fixtures, for the reliability tests that also run on Google Cloud backends."""

from __future__ import annotations

from tests.support.gcp_fixtures import (
    firestore_client,
    firestore_emulator,
    firestore_prefix,
    tasks_emulator,
    tasks_emulator_factory,
)

__all__ = [
    "firestore_client",
    "firestore_emulator",
    "firestore_prefix",
    "tasks_emulator",
    "tasks_emulator_factory",
]
