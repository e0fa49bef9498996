"""Fixtures of the Google Cloud backend tests: real emulators on 127.0.0.1.

Defined in :mod:`tests.support.gcp_fixtures` (the store contract suite imports them too) and
registered here. A missing emulator fails these tests loudly, with install instructions.
"""

from __future__ import annotations

from tests.support.gcp_fixtures import (
    firestore_client,
    firestore_emulator,
    firestore_prefix,
    firestore_reset,
    functions_framework_factory,
    oidc_issuer,
    pubsub_emulator,
    tasks_emulator,
    tasks_emulator_factory,
)

__all__ = [
    "firestore_client",
    "firestore_emulator",
    "firestore_prefix",
    "firestore_reset",
    "functions_framework_factory",
    "oidc_issuer",
    "pubsub_emulator",
    "tasks_emulator",
    "tasks_emulator_factory",
]
