"""Pytest fixtures for the emulators; imported by tests/gcp/conftest.py and the contract suite.

Emulators are session-scoped (started once, stopped at the end of the session by PID);
tests are isolated by a unique collection prefix, not by resetting the emulator. Google
client libraries are imported inside the fixtures, so importing this module costs nothing
to suites that never ask for an emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import emulators
from tests.support.emulators import EMULATOR_PROJECT, FunctionServer, TasksEmulator

if TYPE_CHECKING:
    from google.cloud import firestore

    from tests.support.oidc_issuer import OidcIssuer

DEFAULT_QUEUE = f"projects/{EMULATOR_PROJECT}/locations/here/queues/refluxo"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """The Firestore emulator's ``host:port`` (one per session, shared by every suite)."""
    with emulators.shared("firestore", emulators.start_firestore) as emulator:
        yield emulator.host_port


@pytest.fixture
def firestore_client(
    firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[firestore.Client]:
    """A ``firestore.Client(project="demo-test")`` bound to the emulator.

    The client reads ``FIRESTORE_EMULATOR_HOST`` only while it is constructed, so the
    variable is set for that moment alone: the test itself (and any code it runs that
    looks at the environment) does not see it.
    """
    from google.cloud import firestore

    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
        client = firestore.Client(project=EMULATOR_PROJECT)
    yield client
    # The client has no public way to close its gRPC channel (close() only closes an HTTP
    # session it never opens here); close the GAPIC transport it created, if any.
    api = getattr(client, "_firestore_api_internal", None)
    if api is not None:
        api.transport.close()


@pytest.fixture
def firestore_prefix() -> str:
    """A collection prefix no other test uses: isolation without resetting the emulator."""
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def firestore_reset(firestore_emulator: str) -> Callable[[], None]:
    """Deletes every document in the emulator's project (for tests that need it empty)."""
    return lambda: emulators.reset_firestore(firestore_emulator)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """The Pub/Sub emulator's ``host:port`` (set ``PUBSUB_EMULATOR_HOST`` to it)."""
    with emulators.shared("pubsub", emulators.start_pubsub) as emulator:
        yield emulator.host_port


@pytest.fixture(scope="session")
def tasks_emulator_factory() -> Iterator[Callable[..., TasksEmulator]]:
    """``start(queue_path=DEFAULT_QUEUE, max_retries=3)``: a Cloud Tasks emulator.

    One emulator per distinct (queue, retries) for the session. ``max_retries=None``
    retries forever, as the emulator does by default.
    """
    started: dict[tuple[str, int | None], TasksEmulator] = {}

    def start(queue_path: str = DEFAULT_QUEUE, max_retries: int | None = 3) -> TasksEmulator:
        key = (queue_path, max_retries)
        if key not in started:
            started[key] = emulators.start_tasks(queue_path, max_retries=max_retries)
        return started[key]

    try:
        yield start
    finally:
        for emulator in started.values():
            emulator.process.stop()


@pytest.fixture(scope="session")
def tasks_emulator(tasks_emulator_factory: Callable[..., TasksEmulator]) -> TasksEmulator:
    """The default Cloud Tasks emulator: ``.host_port`` and ``.queue_path`` (3 retries)."""
    return tasks_emulator_factory()


@pytest.fixture
def functions_framework_factory() -> Iterator[Callable[..., FunctionServer]]:
    """``start(source, target, env=..., ...)``: functions-framework servers for one test.

    Takes the arguments of :func:`tests.support.emulators.start_functions_framework`; every
    server started is stopped (by PID) when the test ends.
    """
    servers: list[FunctionServer] = []

    def start(*args: Any, **kwargs: Any) -> FunctionServer:
        server = emulators.start_functions_framework(*args, **kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[OidcIssuer]:
    """A private OIDC issuer for the session: a signing key made for it, its certificate
    published on 127.0.0.1 (``.certs_url(label)``, fetches counted per label), and
    ``.mint(audience, email, **claims)`` for RS256 identity tokens as Google mints them."""
    from tests.support.oidc_issuer import OidcIssuer

    with OidcIssuer() as issuer:
        yield issuer
