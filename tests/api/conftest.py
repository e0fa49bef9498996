"""Fixtures for the HTTP layer's tests: the embedded runtime's, and a secured API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Request
from flask.testing import FlaskClient

from refluxo.api.auth import ApiKeyCheck
from refluxo.api.http import HttpApi
from refluxo.api.server import create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime.errors import Unauthorized
from tests.support.runtime_fixtures import app, db_path, runtime

__all__ = ["app", "db_path", "runtime", "secured", "secured_api"]

API_KEY = "api-key-for-tests-0123456789"
STEP_TOKEN = "scheduler-token-for-tests"
RECONCILE_TOKEN = "reconciler-token-for-tests"
CALLER = {"X-API-Key": API_KEY}
SCHEDULER = {"Authorization": f"Bearer {STEP_TOKEN}"}
RECONCILER = {"Authorization": f"Bearer {RECONCILE_TOKEN}"}


def check_step(request: Request) -> None:
    """Stands in for the scheduler's OIDC check: one bearer token is the scheduler."""
    if request.headers.get("Authorization") != f"Bearer {STEP_TOKEN}":
        raise Unauthorized("only the scheduler may deliver steps")


def check_reconcile(request: Request) -> None:
    """Stands in for the reconciler's OIDC check: another bearer token is the reconciler."""
    if request.headers.get("Authorization") != f"Bearer {RECONCILE_TOKEN}":
        raise Unauthorized("only the reconciler may reconcile")


@pytest.fixture
def secured_api(runtime: EmbeddedRuntime) -> HttpApi:
    return HttpApi(
        runtime.service,
        authenticate=ApiKeyCheck(API_KEY),
        authenticate_step=check_step,
        authenticate_reconcile=check_reconcile,
    )


@pytest.fixture
def secured(secured_api: HttpApi) -> Iterator[FlaskClient]:
    with create_wsgi_app(secured_api).test_client() as client:
        yield client
