"""``POST /tasks/reconcile``: what it does, what it refuses, and who may call it.

On the embedded runtime (a lost delivery is a deleted row of the scheduler's table), with
the route's own credential; then the credentials each deployment configures: the
reconciler's OIDC identity on Google Cloud (real RS256 tokens from a local issuer), the
callers' check on the embedded default. The dispatcher function serves the route, the API
function on Google Cloud does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import refluxo.host.compose
from refluxo.api.http import HttpApi
from refluxo.api.server import create_wsgi_app
from refluxo.backends.gcp.oidc import OidcCheck
from refluxo.backends.memory import MemoryRuntime
from refluxo.host.compose import build_deployment
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.settings import CloudSettings, EmbeddedSettings, Settings, load_settings
from refluxo.runtime.app import App
from refluxo.runtime.service import DEFAULT_RECONCILE_GRACE_MS
from tests.api.conftest import CALLER, RECONCILER, SCHEDULER
from tests.api.support import database
from tests.deploy.test_auth import AUDIENCE, INVOKER, CertsServer, Issuer
from tests.support.clock import FakeClock

RECONCILER_ACCOUNT = "reconciler@acme.iam.gserviceaccount.com"


def lose_deliveries(runtime: EmbeddedRuntime) -> None:
    """Every pending delivery vanishes, as a task Cloud Tasks dropped or never created."""
    with runtime.db.write() as connection:
        connection.execute("DELETE FROM deliveries")


def reconcile(client: FlaskClient, body: Any = None, **headers: str) -> Any:
    if body is None:
        return client.post("/tasks/reconcile", headers={**RECONCILER, **headers})
    return client.post("/tasks/reconcile", json=body, headers={**RECONCILER, **headers})


# -- what it does ---------------------------------------------------------------------------


def test_overdue_runs_are_scheduled_again_and_complete(
    secured: FlaskClient, runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    runs = [runtime.service.start("chain", run_id=f"lost-{i}").record for i in range(3)]
    lose_deliveries(runtime)
    assert runtime.scheduler.drain() == 0

    fresh = reconcile(secured, {})
    assert (fresh.status_code, fresh.get_json()) == (
        200,
        {"examined": 0, "rescheduled": 0, "nextCursor": None},
    )
    clock.advance(DEFAULT_RECONCILE_GRACE_MS)  # the server's grace period
    first = reconcile(secured, {"limit": 2})
    assert first.status_code == 200, first.get_json()
    answer = first.get_json()
    assert (answer["examined"], answer["rescheduled"]) == (2, 2)
    assert isinstance(answer["nextCursor"], str)
    rest = reconcile(secured, {"limit": 2, "cursor": answer["nextCursor"]})
    assert rest.get_json() == {"examined": 1, "rescheduled": 1, "nextCursor": None}

    runtime.scheduler.drain()
    for run in runs:
        assert runtime.service.get(run.run_id).status == "completed"
    assert reconcile(secured).get_json() == {"examined": 0, "rescheduled": 0, "nextCursor": None}


def test_a_request_may_give_its_own_grace_period(
    secured: FlaskClient, runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    runtime.service.start("chain", run_id="lost")
    lose_deliveries(runtime)
    clock.advance(30_000)
    assert reconcile(secured, {"graceS": 31}).get_json()["rescheduled"] == 0
    assert reconcile(secured, {"graceS": 29.5}).get_json()["rescheduled"] == 1
    runtime.scheduler.drain()
    assert runtime.service.get("lost").status == "completed"


def test_without_a_body_it_reconciles_with_the_defaults(
    secured: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    response = secured.post("/tasks/reconcile", headers=RECONCILER)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"examined": 0, "rescheduled": 0, "nextCursor": None}


# -- what it refuses ------------------------------------------------------------------------

MALFORMED = [
    pytest.param({"limit": 0}, "limit", id="limit-0"),
    pytest.param({"limit": 1001}, "limit", id="limit-too-large"),
    pytest.param({"limit": "5"}, "limit", id="limit-text"),
    pytest.param({"limit": 5.5}, "limit", id="limit-fraction"),
    pytest.param({"limit": True}, "limit", id="limit-boolean"),
    pytest.param({"limit": None}, "limit", id="limit-null"),
    pytest.param({"cursor": 7}, "cursor", id="cursor-number"),
    pytest.param({"cursor": None}, "cursor", id="cursor-null"),
    pytest.param({"cursor": "not a cursor"}, "cursor", id="cursor-unissued"),
    pytest.param({"cursor": "x" * 513}, "cursor", id="cursor-too-long"),
    pytest.param({"graceS": -1}, "graceS", id="grace-negative"),
    pytest.param({"graceS": 86_401}, "graceS", id="grace-too-long"),
    pytest.param({"graceS": "600"}, "graceS", id="grace-text"),
    pytest.param({"graceS": False}, "graceS", id="grace-boolean"),
    pytest.param({"graceS": None}, "graceS", id="grace-null"),
    pytest.param([], "object", id="array"),
    pytest.param("reconcile", "object", id="string"),
]


@pytest.mark.parametrize(("body", "fragment"), MALFORMED)
def test_a_malformed_body_is_a_400_that_changes_nothing(
    secured: FlaskClient, runtime: EmbeddedRuntime, clock: FakeClock, body: Any, fragment: str
) -> None:
    runtime.service.start("chain", run_id="lost")
    lose_deliveries(runtime)
    clock.advance(DEFAULT_RECONCILE_GRACE_MS)
    before = database(runtime)
    response = reconcile(secured, body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["code"] == "bad_request"
    assert fragment in response.get_json()["error"]["message"]
    assert database(runtime) == before


def test_a_body_that_is_not_json_is_refused(secured: FlaskClient, runtime: EmbeddedRuntime) -> None:
    bad = secured.post(
        "/tasks/reconcile", data=b"{oops", content_type="application/json", headers=RECONCILER
    )
    assert bad.status_code == 400
    form = secured.post(
        "/tasks/reconcile", data=b"limit=5", content_type="text/plain", headers=RECONCILER
    )
    assert form.status_code == 415


# -- who may call it: the reconciler's OIDC identity on Google Cloud ---------------------------


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer("key-1")


@pytest.fixture
def certs(issuer: Issuer) -> Iterator[CertsServer]:
    server = CertsServer({issuer.kid: issuer.pem()})
    yield server
    server.stop()


@pytest.fixture
def dispatcher(runtime: EmbeddedRuntime, certs: CertsServer) -> Flask:
    """The dispatcher's checks: the tasks invoker for steps, the reconciler for reconciles."""
    api = HttpApi(
        runtime.service,
        authenticate_step=OidcCheck(AUDIENCE, INVOKER, certs_url=certs.url),
        authenticate_reconcile=OidcCheck(AUDIENCE, RECONCILER_ACCOUNT, certs_url=certs.url),
    )
    return create_wsgi_app(api)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_only_the_reconcilers_token_may_reconcile(
    dispatcher: Flask, issuer: Issuer, runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    runtime.service.start("chain", run_id="lost")
    lose_deliveries(runtime)
    clock.advance(DEFAULT_RECONCILE_GRACE_MS)
    refused = [
        ({}, 401),
        (bearer("not.a.token"), 401),
        (bearer(Issuer("key-1").token(email=RECONCILER_ACCOUNT)), 401),  # another key
        (bearer(issuer.token(email=RECONCILER_ACCOUNT, aud="https://elsewhere")), 401),
        (bearer(issuer.token()), 403),  # the tasks invoker: valid, but not the reconciler
        (bearer(issuer.token(email="intruder@evil.example")), 403),
        (CALLER, 401),
    ]
    before = database(runtime)
    with dispatcher.test_client() as client:
        for headers, status in refused:
            response = client.post("/tasks/reconcile", json={}, headers=headers)
            assert response.status_code == status, (headers, response.get_json())
        assert database(runtime) == before
        allowed = client.post(
            "/tasks/reconcile", json={}, headers=bearer(issuer.token(email=RECONCILER_ACCOUNT))
        )
        assert allowed.status_code == 200, allowed.get_json()
        assert allowed.get_json()["rescheduled"] == 1
        # And the reconciler's token delivers no step.
        step = client.post(
            "/tasks/step",
            json={"runId": "lost", "version": 0},
            headers=bearer(issuer.token(email=RECONCILER_ACCOUNT)),
        )
        assert step.status_code == 403


# -- who may call it: as each deployment is composed ----------------------------------------

CLOUD = {
    "REFLUXO_BACKEND": "gcp",
    "GOOGLE_CLOUD_PROJECT": "acme",
    "REFLUXO_REGION": "europe-west1",
    "REFLUXO_TASKS_QUEUE": "refluxo-steps",
    "REFLUXO_STEP_URL": f"{AUDIENCE}/tasks/step",
    "REFLUXO_TASKS_SERVICE_ACCOUNT": INVOKER,
    "REFLUXO_OIDC_AUDIENCE": AUDIENCE,
    "REFLUXO_API_KEY": "k" * 32,
}


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gcp backend's runtime replaced by the memory one: the wiring of the routes and
    their checks is what is under test, not Firestore."""
    backends = dict(refluxo.host.compose.BACKENDS)
    backends["gcp"] = lambda settings, app: MemoryRuntime(app)
    monkeypatch.setattr(refluxo.host.compose, "BACKENDS", backends)


def compose(settings: Settings, app: App, **roles: bool) -> Iterator[HttpApi]:
    deployment = build_deployment(settings, app, **roles)
    try:
        yield deployment.api
    finally:
        deployment.close()


def post(api: HttpApi, path: str, headers: dict[str, str] | None = None) -> Any:
    with create_wsgi_app(api).test_client() as client:
        return client.post(path, json={}, headers=headers or {})


@pytest.mark.usefixtures("in_memory")
@pytest.mark.parametrize(
    ("extra", "account"),
    [({}, INVOKER), ({"REFLUXO_RECONCILER_SERVICE_ACCOUNT": RECONCILER_ACCOUNT}, None)],
    ids=["default-account", "own-account"],
)
def test_the_dispatcher_function_checks_the_reconcilers_identity(
    app: App, extra: dict[str, str], account: str | None
) -> None:
    settings = load_settings({**CLOUD, **extra})
    assert isinstance(settings, CloudSettings)
    for api in compose(settings, app, callers=False):
        check = api.authenticate_reconcile
        assert isinstance(check, OidcCheck)
        assert check.audience == AUDIENCE
        assert check.service_account == (account or RECONCILER_ACCOUNT)
        if account == INVOKER:
            assert check is api.authenticate_step  # one certificate cache for both
        assert post(api, "/tasks/reconcile").status_code == 401
        assert post(api, "/tasks/reconcile", {"X-API-Key": "k" * 32}).status_code == 401


@pytest.mark.usefixtures("in_memory")
def test_the_api_function_does_not_serve_the_route(app: App) -> None:
    settings = load_settings(CLOUD)
    for api in compose(settings, app, callers=True, scheduler=False):
        response = post(api, "/tasks/reconcile", {"X-API-Key": "k" * 32})
        assert response.status_code == 404
        assert "/tasks/reconcile" not in post(api, "/openapi.json").get_data(as_text=True)
    for api in compose(settings, app, callers=False):
        routes = {route.label for route in api.routes}
        assert routes == {
            "GET /healthz",
            "GET /openapi.json",
            "POST /tasks/step",
            "POST /tasks/reconcile",
        }


def test_on_the_embedded_default_the_api_key_guards_the_route(app: App, tmp_path: Path) -> None:
    settings = dataclasses.replace(
        load_settings({"REFLUXO_DB": str(tmp_path / "keyed.db"), "REFLUXO_WORKERS": "0"}),
        api_key="k" * 32,
    )
    assert isinstance(settings, EmbeddedSettings)
    for api in compose(settings, app):
        assert post(api, "/tasks/reconcile").status_code == 401
        assert post(api, "/tasks/reconcile", SCHEDULER).status_code == 401
        keyed = post(api, "/tasks/reconcile", {"X-API-Key": "k" * 32})
        assert keyed.status_code == 200, keyed.get_json()
