"""Every route is authenticated as its table entry declares, and protected unless public.

The tests iterate over the route table itself: a route added to it is covered without
touching this file, and one added without saying who may call it is protected.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

import refluxo.api.http
from refluxo.api.auth import ApiKeyCheck
from refluxo.api.contract import Auth, Call, Route
from refluxo.api.http import HttpApi
from refluxo.api.models import HealthView
from refluxo.api.routes import ROUTES
from refluxo.api.server import create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from tests.api.conftest import CALLER, RECONCILER, SCHEDULER
from tests.api.support import concrete_path, database

PROTECTED = [pytest.param(r, id=r.label) for r in ROUTES if r.auth is not Auth.PUBLIC]
PUBLIC = [pytest.param(r, id=r.label) for r in ROUTES if r.auth is Auth.PUBLIC]
CREDENTIALS = {Auth.CALLER: CALLER, Auth.SCHEDULER: SCHEDULER, Auth.RECONCILER: RECONCILER}


def test_only_liveness_the_document_and_the_inspectors_files_are_public() -> None:
    public = {route.label for route in ROUTES if route.auth is Auth.PUBLIC and route.documented}
    assert public == {"GET /healthz", "GET /openapi.json"}
    pages = [route for route in ROUTES if not route.documented]
    # The inspector's pages and files hold no run data: public, and only ever read.
    assert all(route.auth is Auth.PUBLIC and route.method == "GET" for route in pages)
    step = [route for route in ROUTES if route.auth is Auth.SCHEDULER]
    assert [route.label for route in step] == ["POST /tasks/step"]
    reconcile = [route for route in ROUTES if route.auth is Auth.RECONCILER]
    assert [route.label for route in reconcile] == ["POST /tasks/reconcile"]


@pytest.mark.parametrize("route", PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"X-API-Key": "not-the-key-0123456789"}, id="wrong-key"),
        pytest.param({"Authorization": "Bearer not-the-token"}, id="wrong-token"),
    ],
)
def test_a_protected_route_refuses_a_call_without_its_credential(
    secured: FlaskClient, runtime: EmbeddedRuntime, route: Route, headers: dict[str, str]
) -> None:
    before = database(runtime)
    response = secured.open(concrete_path(route), method=route.method, json={}, headers=headers)
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert database(runtime) == before


OTHER_KINDS = [
    pytest.param(r, other, id=f"{r.label}-{other.value}")
    for r in ROUTES
    if r.auth is not Auth.PUBLIC
    for other in CREDENTIALS
    if other is not r.auth
]


@pytest.mark.parametrize(("route", "other"), OTHER_KINDS)
def test_a_protected_route_refuses_the_other_kinds_credential(
    secured: FlaskClient, runtime: EmbeddedRuntime, route: Route, other: Auth
) -> None:
    before = database(runtime)
    response = secured.open(
        concrete_path(route), method=route.method, json={}, headers=CREDENTIALS[other]
    )
    assert response.status_code == 401
    assert database(runtime) == before


@pytest.mark.parametrize("route", PROTECTED)
def test_a_protected_route_admits_its_credential(secured: FlaskClient, route: Route) -> None:
    """Past authentication: whatever the answer (404 for an unknown run...), not 401/403."""
    response = secured.open(
        concrete_path(route), method=route.method, json={}, headers=CREDENTIALS[route.auth]
    )
    assert response.status_code not in (401, 403), response.get_json()


@pytest.mark.parametrize("route", PUBLIC)
def test_a_public_route_needs_no_credential(secured: FlaskClient, route: Route) -> None:
    response = secured.open(concrete_path(route), method=route.method)
    assert response.status_code == 200


def test_authentication_comes_before_validation(secured: FlaskClient) -> None:
    """A stranger learns nothing about the inputs, not even that they are malformed."""
    response = secured.post("/runs", data=b"{not json", content_type="application/json")
    assert response.status_code == 401
    oversized = secured.post("/tasks/step", data=b"x" * (2 << 20))
    assert oversized.status_code == 401


def probe(call: Call) -> HealthView:
    return HealthView(status="ok")


def test_a_route_that_does_not_declare_its_auth_is_protected(runtime: EmbeddedRuntime) -> None:
    undeclared = Route("GET", "/probe", "probe", probe, HealthView, "a new endpoint")
    assert undeclared.auth is Auth.CALLER
    api = HttpApi(
        runtime.service,
        authenticate=ApiKeyCheck(CALLER["X-API-Key"]),
        routes=(*ROUTES, undeclared),
    )
    with create_wsgi_app(api).test_client() as client:
        assert client.get("/probe").status_code == 401
        assert client.get("/probe", headers=CALLER).get_json() == {"status": "ok"}


def test_without_authenticators_the_local_default_accepts_every_call(
    runtime: EmbeddedRuntime,
) -> None:
    run = runtime.service.start("chain").record
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        assert client.get(f"/runs/{run.run_id}").status_code == 200
        step = client.post("/tasks/step", json={"runId": run.run_id, "version": 0})
        assert step.status_code == 200


def test_a_kind_not_accepted_without_authenticator_refuses_until_one_is_given(
    runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one switch that decides what a missing authenticator means."""
    monkeypatch.setattr(
        refluxo.api.http, "ACCEPTED_WITHOUT_AUTHENTICATOR", frozenset({Auth.CALLER})
    )
    run = runtime.service.start("chain").record
    body = {"runId": run.run_id, "version": 0}
    with create_wsgi_app(HttpApi(runtime.service)).test_client() as client:
        refused = client.post("/tasks/step", json=body)
        assert refused.status_code == 401
        assert "no authenticator" in refused.get_json()["error"]["message"]
        assert client.get(f"/runs/{run.run_id}").status_code == 200
    assert runtime.service.get(run.run_id).version == 0
