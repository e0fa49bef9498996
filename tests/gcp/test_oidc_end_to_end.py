"""The step function's OIDC check, end to end: main.py under functions-framework on the
emulators, RS256 tokens signed by a private issuer whose certificates the function fetches
from ``REFLUXO_OIDC_CERTS_URL`` (see :mod:`tests.support.e2e_deployment`).

A real delivery, held on its way from the Cloud Tasks emulator, is replayed with every kind
of bad token: each is refused (401 or 403, a JSON error naming no internal address) and
commits nothing, and the delivery then goes through with the invoker's token. The
functions ask Cloud Tasks for exactly that token; the certificates are fetched once for
many deliveries; and when they cannot be fetched the answer is a 429, which Cloud Tasks
retries.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from refluxo.backends.gcp.cloud_tasks import tasks_client_for_emulator
from tests.support.e2e_deployment import SOURCE, Deployment, deploy, start_all
from tests.support.emulators import (
    FunctionServer,
    TasksEmulator,
    free_port,
    local_urlopen,
    start_functions_framework,
)
from tests.support.gcp_queue import delivery_of
from tests.support.oidc_issuer import (
    TASKS_SERVICE_ACCOUNT,
    TOKEN_LIFETIME_S,
    OidcIssuer,
    SigningKey,
)
from tests.support.waiting import wait_until

STRANGER = "someone-else@demo-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def deployed(
    firestore_emulator: str, tasks_emulator: TasksEmulator, oidc_issuer: OidcIssuer
) -> Iterator[Deployment]:
    with deploy(firestore_emulator, tasks_emulator, oidc_issuer) as deployment:
        yield deployment


def post_step(url: str, body: bytes, authorization: str | None) -> tuple[int, str]:
    """POST ``body`` to the step function as Cloud Tasks does; its status and body."""
    request = urllib.request.Request(f"{url}/tasks/step", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "Google-Cloud-Tasks")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with local_urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def for_run(run_id: str) -> Callable[[bytes], bool]:
    return lambda body: (delivery_of(body) or {}).get("runId") == run_id


def new_run_id() -> str:
    return f"oidc-{uuid.uuid4().hex[:12]}"


def status_of(deployed: Deployment, run_id: str) -> str | None:
    record = deployed.store.load_run(run_id)
    return None if record is None else record.status.value


def assert_names_nothing_internal(deployed: Deployment, body: str, *also: str) -> None:
    """The answer names neither the issuer, nor a port, nor any URL."""
    host_port = deployed.issuer.origin.removeprefix("http://")
    for leak in ("http", "127.0.0.1", "localhost", host_port, "/certs", "googleapis", *also):
        assert leak not in body, f"{leak!r} in {body}"


def bad_tokens(deployed: Deployment) -> dict[str, str | None]:
    """An ``Authorization`` header of each kind Cloud Tasks never sends for the invoker."""
    issuer, audience = deployed.issuer, deployed.audience
    stale = time.time() - 2 * TOKEN_LIFETIME_S

    def bearer(token: str) -> str:
        return f"Bearer {token}"

    return {
        "no token": None,
        "not a bearer token": "Basic " + "dXNlcjpwYXNzd29yZA==",
        "expired": bearer(issuer.mint(audience, issued_at=stale)),
        "another audience": bearer(issuer.mint("https://elsewhere.example.run.app")),
        "another service account": bearer(issuer.mint(audience, STRANGER)),
        "another issuer": bearer(issuer.mint(audience, iss="https://issuer.example")),
        "email_verified a string": bearer(issuer.mint(audience, email_verified="true")),
        "signed by another key, same kid": bearer(issuer.mint(audience, key=issuer.impostor())),
        "signed by an unknown key": bearer(issuer.mint(audience, key=SigningKey("rotated"))),
    }


REFUSED = {
    "no token": (401, "unauthorized"),
    "not a bearer token": (401, "unauthorized"),
    "expired": (401, "unauthorized"),
    "another audience": (401, "unauthorized"),
    "another service account": (403, "forbidden"),
    "another issuer": (401, "unauthorized"),
    "email_verified a string": (403, "forbidden"),
    "signed by another key, same kid": (401, "unauthorized"),
    "signed by an unknown key": (401, "unauthorized"),
}


def test_a_delivery_with_a_bad_token_is_refused_and_commits_nothing(
    deployed: Deployment,
) -> None:
    run_id = new_run_id()
    with deployed.relay.holding(for_run(run_id)) as held:
        deployed.api.start("chain", run_id=run_id)
        body = held(60)
        before = deployed.store.load_run(run_id)
        assert before is not None
        assert before.version == 0
        timeline = list(deployed.store.timeline(run_id))

        answers: dict[str, tuple[int, str]] = {}
        for case, authorization in bad_tokens(deployed).items():
            status, text = post_step(deployed.step.url, body, authorization)
            error = json.loads(text)["error"]
            answers[case] = (status, error["code"])
            assert_names_nothing_internal(deployed, text)
        assert answers == REFUSED

        assert deployed.store.load_run(run_id) == before
        assert list(deployed.store.timeline(run_id)) == timeline
    # The same delivery, with the invoker's token, goes through.
    forwarded = deployed.relay.wait_forwarded(lambda done: done.body == body, 30)
    assert forwarded.status == 200
    wait_until(lambda: status_of(deployed, run_id) == "completed", 60, "the chain")
    # Refused tokens did not make the function fetch the certificates again: a stranger's
    # key id refetches at most once a minute.
    assert deployed.issuer.fetches(deployed.certs_label) == 1


def test_the_functions_ask_cloud_tasks_for_the_invokers_token(deployed: Deployment) -> None:
    """What the relay adds is what Cloud Tasks would: the task names the identity and the
    audience (the emulator keeps it, and ignores it)."""
    first, second = new_run_id(), new_run_id()
    with deployed.relay.holding(for_run(first)) as held:
        deployed.api.start("chain", run_id=first)
        held(60)
        # The emulator waits on the held request: the next task stays in its queue.
        deployed.api.start("chain", run_id=second)
        with tasks_client_for_emulator(deployed.tasks.host_port) as client:
            queued = [
                task
                for task in client.list_tasks(parent=deployed.tasks.queue_path)
                if for_run(second)(task.http_request.body)
            ]
    assert len(queued) == 1
    request = queued[0].http_request
    assert request.url == deployed.step_url
    assert request.oidc_token.service_account_email == TASKS_SERVICE_ACCOUNT
    assert request.oidc_token.audience == deployed.audience
    wait_until(
        lambda: {status_of(deployed, first), status_of(deployed, second)} == {"completed"},
        60,
        "the chains",
    )


@dataclass
class SideSteps:
    """Two more step functions of the deployment, each its own process (so its own
    certificates' cache): one on a certificates' address of its own, one whose
    certificates' server is down."""

    cached: FunctionServer
    cached_label: str
    down: FunctionServer
    down_port: int


@pytest.fixture(scope="module")
def side_steps(deployed: Deployment) -> Iterator[SideSteps]:
    label = f"{deployed.certs_label}-cache"
    port = free_port()  # nothing listens there
    urls = {"cached": deployed.issuer.certs_url(label), "down": f"http://127.0.0.1:{port}/certs"}

    def starter(url: str) -> Callable[[], FunctionServer]:
        env = deployed.step_env(REFLUXO_OIDC_CERTS_URL=url)
        return lambda: start_functions_framework(SOURCE, "step", env=env)

    with ExitStack() as stack:
        servers = start_all({name: starter(url) for name, url in urls.items()}, stack)
        yield SideSteps(servers["cached"], label, servers["down"], port)


def test_fifty_deliveries_fetch_the_certificates_once(
    deployed: Deployment, side_steps: SideSteps
) -> None:
    run_id = deployed.api.start("chain")["runId"]
    wait_until(lambda: status_of(deployed, run_id) == "completed", 60, "the chain")
    body = json.dumps({"runId": run_id, "version": 0}).encode()

    def deliver(_: int) -> tuple[int, Any]:
        status, text = post_step(side_steps.cached.url, body, f"Bearer {deployed.token()}")
        return status, json.loads(text)

    assert deployed.issuer.fetches(side_steps.cached_label) == 0
    # Many at once on a cold cache, then one after another on a warm one.
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(deliver, range(25)))
    answers += [deliver(index) for index in range(25)]
    assert answers == [(200, {"outcome": "stale", "steps": 0})] * 50
    assert deployed.issuer.fetches(side_steps.cached_label) == 1


def test_certificates_that_cannot_be_fetched_are_a_429_naming_nothing(
    deployed: Deployment, side_steps: SideSteps
) -> None:
    server = side_steps.down
    run_id = new_run_id()
    with deployed.relay.holding(for_run(run_id)) as held:
        deployed.api.start("chain", run_id=run_id)
        body = held(60)
        before = deployed.store.load_run(run_id)
        for _ in range(2):  # each delivery tries again, and fails the same way
            status, text = post_step(server.url, body, f"Bearer {deployed.token()}")
            assert status == 429, text
            assert json.loads(text)["error"]["code"] == "unavailable"
            leaks = (str(side_steps.down_port), "Errno", "Connection", "refused")
            assert_names_nothing_internal(deployed, text, *leaks)
        assert deployed.store.load_run(run_id) == before
    # The reason is in the function's log, for its operator.
    wait_until(
        lambda: "fetching the OIDC signing certificates failed" in server.process.log_tail(),
        10,
        "the failure to be logged",
    )
    wait_until(lambda: status_of(deployed, run_id) == "completed", 60, "the chain")
