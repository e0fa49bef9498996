"""The contract suites' fixtures: one param per backend, from the registries.

``store`` runs each store test against every entry of
:data:`tests.contract.store_backends.STORES`, ``scheduler`` each scheduler test against
every entry of :data:`tests.contract.scheduler_backends.SCHEDULERS`; ``fallible_store`` and
``fallible_scheduler`` run the tests of transient failures against those that do I/O. The
Google Cloud entries use the real emulators (started once per session by
:mod:`tests.support.gcp_fixtures`; a missing emulator fails those tests with install
instructions).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.contract.scheduler_backends import FALLIBLE_SCHEDULERS, SCHEDULERS, SchedulerUnderTest
from tests.contract.store_backends import FALLIBLE_STORES, STORES, StoreUnderTest
from tests.support.gcp_fixtures import (
    firestore_client,
    firestore_emulator,
    firestore_prefix,
    tasks_emulator,
    tasks_emulator_factory,
)

__all__ = [
    "fallible_scheduler",
    "fallible_store",
    "firestore_client",
    "firestore_emulator",
    "firestore_prefix",
    "run_id",
    "scheduler",
    "store",
    "tasks_emulator",
    "tasks_emulator_factory",
]


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    with STORES[request.param](request) as under_test:
        yield under_test


@pytest.fixture(params=list(SCHEDULERS))
def scheduler(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    with SCHEDULERS[request.param](request) as under_test:
        yield under_test


@pytest.fixture(params=FALLIBLE_STORES)
def fallible_store(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    """The stores that do I/O, with their ``unavailable`` hook."""
    with STORES[request.param](request) as under_test:
        assert under_test.unavailable is not None, f"{request.param} has no unavailable hook"
        yield under_test


@pytest.fixture(params=FALLIBLE_SCHEDULERS)
def fallible_scheduler(request: pytest.FixtureRequest) -> Iterator[SchedulerUnderTest]:
    """The schedulers that do I/O, with their ``unavailable`` hook."""
    with SCHEDULERS[request.param](request) as under_test:
        assert under_test.unavailable is not None, f"{request.param} has no unavailable hook"
        yield under_test


@pytest.fixture
def run_id() -> str:
    """A run id no other test uses (the emulators are shared by the whole session)."""
    return f"run-{uuid.uuid4().hex[:12]}"
