"""A deployment on the emulators, as the end-to-end tests run it: main.py under
functions-framework (the ``step`` function, the ``api`` function and optionally the
``on_message`` one), Firestore and Cloud Tasks emulators, OIDC verification ON.

Cloud Tasks delivers each step with the tasks invoker's identity token; the emulator does
not, so the functions' step URL is a :class:`~tests.support.gcp_queue.SigningRelay` that
adds the token (minted by a :class:`~tests.support.oidc_issuer.OidcIssuer` for the
invoker and the audience) and forwards the request to the step function, with the token's
signature removed as Cloud Run's IAM hands it on (``REFLUXO_INVOKER_IAM=true``, as
Terraform deploys). Tokens posted straight to a function, signed, are verified against
the issuer's certificates (``REFLUXO_OIDC_CERTS_URL``) exactly as Google's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from refluxo.api.client import HttpClient
from refluxo.backends.gcp.firestore.store import FirestoreStore
from tests.support.emulators import (
    EMULATOR_PROJECT,
    FunctionServer,
    TasksEmulator,
    start_functions_framework,
)
from tests.support.gcp_queue import SigningRelay
from tests.support.oidc_issuer import TASKS_SERVICE_ACCOUNT, OidcIssuer

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "main.py"
API_KEY = "e2e-" + "k" * 28
LOOPBACK = "127.0.0.1,localhost"


@dataclass
class Deployment:
    """The running functions, the store they share, and how deliveries reach them."""

    env: dict[str, str]
    step: FunctionServer
    api_server: FunctionServer
    events: FunctionServer | None
    store: FirestoreStore
    tasks: TasksEmulator
    relay: SigningRelay
    issuer: OidcIssuer
    certs_label: str

    @property
    def api(self) -> HttpClient:
        return HttpClient(self.api_server.url, api_key=API_KEY)

    @property
    def step_url(self) -> str:
        """The URL the functions give their tasks (the relay's)."""
        return self.relay.url

    @property
    def audience(self) -> str:
        """The tokens' audience: the dispatcher's URL, as on Google Cloud."""
        return self.relay.origin

    def token(self, email: str = TASKS_SERVICE_ACCOUNT, **claims: Any) -> str:
        """A token for this deployment's audience (the invoker's unless ``email``)."""
        return self.issuer.mint(self.audience, email, **claims)

    def step_env(self, **overrides: str) -> dict[str, str]:
        """The environment of another step function beside this deployment's."""
        return {**self.env, "FUNCTION_TARGET": "step", **overrides}


def deployment_env(
    *,
    project: str,
    region: str,
    queue: str,
    tasks_host: str,
    firestore_host: str,
    prefix: str,
    relay: SigningRelay,
    certs_url: str,
) -> dict[str, str]:
    return {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": project,
        "REFLUXO_REGION": region,
        "REFLUXO_TASKS_QUEUE": queue,
        "REFLUXO_STEP_URL": relay.url,
        "REFLUXO_VERIFY_OIDC": "true",
        "REFLUXO_INVOKER_IAM": "true",
        "REFLUXO_TASKS_SERVICE_ACCOUNT": TASKS_SERVICE_ACCOUNT,
        "REFLUXO_OIDC_AUDIENCE": relay.origin,
        "REFLUXO_OIDC_CERTS_URL": certs_url,
        "REFLUXO_TASKS_EMULATOR_HOST": tasks_host,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "REFLUXO_COLLECTION_PREFIX": prefix,
        "REFLUXO_APP": "tests.support.e2e_app:app",
        "REFLUXO_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
        # Every server here is on 127.0.0.1: an HTTP proxy from the environment must not
        # carry the certificates' fetch (requests honours these variables).
        "NO_PROXY": LOOPBACK,
        "no_proxy": LOOPBACK,
    }


def stop_all(servers: list[FunctionServer]) -> None:
    """Stop the servers at once (each waits for its workers to exit)."""
    if servers:
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            list(pool.map(FunctionServer.stop, servers))


def start_all(
    starts: Mapping[str, Callable[[], FunctionServer]], stack: ExitStack
) -> dict[str, FunctionServer]:
    """Start the servers at once (each takes a second or two to import main.py); every
    one started is stopped when ``stack`` closes, whichever failed."""
    started: dict[str, FunctionServer] = {}
    stack.callback(lambda: stop_all(list(started.values())))
    with ThreadPoolExecutor(max_workers=len(starts)) as pool:
        futures = {name: pool.submit(start) for name, start in starts.items()}
        failure: BaseException | None = None
        for name, future in futures.items():
            try:
                started[name] = future.result()
            except BaseException as err:  # the others are stopped; the first is raised
                failure = failure or err
    if failure is not None:
        raise failure
    return started


@contextmanager
def deploy(
    firestore_host: str, tasks: TasksEmulator, issuer: OidcIssuer, *, events: bool = False
) -> Iterator[Deployment]:
    """Deploy the e2e app: step and api functions (and ``on_message`` if ``events``)."""
    project, _, region, _, queue = tasks.queue_path.split("/")[1:6]
    prefix = f"e2e{uuid.uuid4().hex[:12]}"
    label = prefix
    # The audience is the dispatcher's URL: the relay's origin, as the functions see it.
    # Terraform's functions require authentication: Cloud Run checks each token and hands
    # it on without its signature.
    relay: SigningRelay = SigningRelay(lambda: issuer.mint(relay.origin), through_iam=True)
    env = deployment_env(
        project=project,
        region=region,
        queue=queue,
        tasks_host=tasks.host_port,
        firestore_host=firestore_host,
        prefix=prefix,
        relay=relay,
        certs_url=issuer.certs_url(label),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
        client = firestore.Client(project=EMULATOR_PROJECT)
    starts: dict[str, Callable[[], FunctionServer]] = {
        "step": lambda: start_functions_framework(SOURCE, "step", env=env),
        "api": lambda: start_functions_framework(SOURCE, "api", env=env),
    }
    if events:
        starts["events"] = lambda: start_functions_framework(
            SOURCE, "on_message", env=env, signature_type="cloudevent"
        )
    with ExitStack() as stack:
        stack.enter_context(relay)
        servers = start_all(starts, stack)
        relay.target = servers["step"].url
        yield Deployment(
            env=env,
            step=servers["step"],
            api_server=servers["api"],
            events=servers.get("events"),
            store=FirestoreStore(client, prefix=prefix),
            tasks=tasks,
            relay=relay,
            issuer=issuer,
            certs_label=label,
        )


__all__ = [
    "API_KEY",
    "SOURCE",
    "Deployment",
    "deploy",
    "deployment_env",
    "start_all",
    "stop_all",
]
