"""Fixtures of the inspector's HTTP tests: the API's (an embedded runtime, a secured API)."""

from __future__ import annotations

from tests.api.conftest import secured, secured_api
from tests.support.runtime_fixtures import app, db_path, runtime

__all__ = ["app", "db_path", "runtime", "secured", "secured_api"]
